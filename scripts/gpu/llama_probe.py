"""Load the llama-cpp-cuda-1b engine once per variant, each in a fresh interpreter (a crash
ends only its variant), and print which load and decode a round: the engine's own process
at n_seq_max 256 with host and with backend sampling; where that fails, the in-process
adapter at 256 and the engine's process at 128.

    python scripts/gpu/llama_probe.py > probe.txt
"""

import subprocess
import sys

CODE = """
import faulthandler, sys; faulthandler.enable()
from pytest_batchperf.profiles import BUILTIN
from pytest_batchperf.engines import load_in_process
from pytest_batchperf.engines.isolated import IsolatedEngine
from pytest_batchperf import workload as W
from pytest_batchperf.workload import Strategy
how, n, bs = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
spec = BUILTIN["llama-cpp-cuda-1b"].with_overrides({"n_seq_max": n, "backend_sampling": bs}).engine_spec()
e = load_in_process(spec) if how == "in-process" else IsolatedEngine(spec, 120)
e.warmup() if how == "in-process" else None
wl = W.build(W.WorkloadSpec(num_requests=2 * n, prompt=W.fixed(32), output=W.fixed(64), seed=1), e.vocab_size)
tr = e.run_round(wl, Strategy.CONTINUOUS, n)
print(sum(r.output_tokens for r in tr.requests), "tokens")
e.close()
"""


def probe(how: str, n: int, bs: str) -> bool:
    r = subprocess.run(
        [sys.executable, "-c", CODE, how, str(n), bs], capture_output=True, text=True
    )
    tail = (r.stdout + r.stderr).strip().splitlines()[-12:]
    print(f"{how} n_seq_max={n} backend_sampling={bs}: rc={r.returncode}", flush=True)
    print("   " + "\n   ".join(tail), flush=True)
    return r.returncode == 0


for bs in ("0", "1"):  # 128 only where 256 failed; in-process only where the child failed
    if not probe("isolated", 256, bs):
        probe("in-process", 256, bs)
        probe("isolated", 128, bs)
