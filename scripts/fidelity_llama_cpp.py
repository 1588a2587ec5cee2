"""Decode speed of our llama-cpp engine against llama.cpp's own llama-batched-bench.

Both run the same synthetic GGUF on the same llama.cpp source (the pinned
llama-cpp-python's, built by pytest_batchperf.engines.llama_build), with the profile's
threads, context, batch sizes, GPU layers and a unified KV cache. A third column runs
batched-bench's loop through llama-cpp-python on our engine's own context (the engine's
per-step work is ours / loop). Where the bench is a shared-library build
(``-D BUILD_SHARED_LIBS=ON``, with LLAMA_CPP_LIB_PATH at its bin/), a fourth runs the same
loop in C on that libllama (llama_decode_loop.c): loop / C is what driving llama.cpp from
Python costs at all. Runs alternate so that drift in the machine's load hits all alike.
Prints S_TG medians and the medians of each repetition's ratios with 95 % bootstrap
intervals; ``--steps`` splits our decode step by part.

    PYTHONPATH=. python scripts/fidelity_llama_cpp.py [--shapes tiny,small] [--reps 7] [--raw FILE]
    # the C loop too: LLAMA_CPP_LIB_PATH=<bin> ... --bench <bin>/llama-batched-bench, where
    # <bin> is what `batchperf build-llama-cpp -D BUILD_SHARED_LIBS=ON` prints
    # on a GPU: the tools and llama-cpp-python's libraries of one CUDA build (scripts/gpu/)
    ... --profile llama-cpp-cuda-1b --shapes 1b --npl 1,8,32,128 --bench PATH --quiet-limit 0
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time

import llama_cpp as L  # before numpy: the other order crashed the CUDA build's model load
import numpy as np

from pytest_batchperf import workload as W
from pytest_batchperf.engines import load_in_process as load
from pytest_batchperf.engines.llama_build import build
from pytest_batchperf.models.gguf_model import gguf_path
from pytest_batchperf.models.shapes import shape
from pytest_batchperf.profiles import BUILTIN, parse_overrides
from pytest_batchperf.workload import Strategy

PP, TG = 32, 64
CTX: dict[str, int] = {}  # the profile's context knobs, set by main()


def others_cpu() -> dict[int, float]:
    """CPU seconds used so far by every process but this one and its children."""
    me, out = os.getpid(), {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue
        if int(d) != me and int(fields[1]) != me:  # fields[1]: the parent pid
            out[int(d)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


QUIET = {"limit": 0.05}  # --quiet-limit


def quiet(measure, *args, limit=None, tries=20, wait_s=900):
    """measure(*args), taken while no other process used more than ``limit`` of a CPU:
    this machine's 2 cores are shared, and a co-runner slows the OpenMP threads of both
    tools many-fold. Waits (up to wait_s) for a quiet half second first; retries a
    disturbed sample. A limit of 0 measures at once."""
    limit = QUIET["limit"] if limit is None else limit
    if limit <= 0:
        return measure(*args)
    for _ in range(tries):
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            before = others_cpu()
            time.sleep(0.5)
            if sum(v - before.get(k, 0) for k, v in others_cpu().items()) < 0.5 * limit:
                break
        before, t = others_cpu(), time.perf_counter()
        value = measure(*args)
        used = sum(v - before.get(k, 0) for k, v in others_cpu().items())
        if used <= max(0.02, limit * (time.perf_counter() - t)):  # 0.02: two clock ticks
            return value
    raise RuntimeError(f"no undisturbed sample of {measure.__name__} in {tries} tries")


def theirs(bench, model, npl: int) -> float:
    """batched-bench's S_TG = npl*TG / (time of the TG decode steps). It runs the size
    twice and the second run counts: the first in a fresh process often came out slower
    (one-off costs), and our engine's first round of each size is not recorded either."""
    cmd = [
        str(bench),
        "-m",
        str(model),
        "-c",
        str(CTX["n_ctx"]),
        "-b",
        str(CTX["n_batch"]),
        "-ub",
        str(CTX["n_ubatch"]),
        "-t",
        str(CTX["n_threads"]),
        "-tb",
        str(CTX["n_threads"]),
        "-ngl",
        str(999 if CTX["n_gpu_layers"] < 0 else CTX["n_gpu_layers"]),
        "-kvu",
        "-npp",
        str(PP),
        "-ntg",
        str(TG),
        "-npl",
        f"{npl},{npl}",
        "--output-format",
        "jsonl",
    ]
    for _ in range(10):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows = [x for x in out.stdout.splitlines() if x.startswith('{"n_kv_max')]
        if len(rows) == 2:
            return json.loads(rows[1])["speed_tg"]
    # It leaks its async logger on purpose (upstream issue 22142), so a result line is
    # sometimes lost at exit; a lost line says nothing about the speed, so run it again.
    raise RuntimeError(f"no result lines from {' '.join(cmd)}")


def compile_c_loop(bench) -> str | None:
    """llama_decode_loop.c built against the libllama beside ``bench`` (a shared-library
    build, which LLAMA_CPP_LIB_PATH makes our engine load too); None where there is none."""
    bin_dir = os.path.dirname(os.path.abspath(bench))
    if not os.path.exists(f"{bin_dir}/libllama.so"):
        return None
    src, exe = f"{bin_dir}/../src", f"{bin_dir}/llama-decode-loop"
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "llama_decode_loop.c")
    subprocess.run(
        [
            "cc",
            "-O2",
            f"-I{src}/include",
            f"-I{src}/ggml/include",
            here,
            f"-L{bin_dir}",
            "-lllama",
            f"-Wl,-rpath,{bin_dir}",
            "-o",
            exe,
        ],
        check=True,
    )
    return exe


def c_loop(exe, model, npl: int) -> float:
    """The decode loop in C on the same libllama: one unrecorded repetition, one recorded."""
    args = [CTX[k] for k in ("n_ctx", "n_batch", "n_ubatch", "n_threads")]
    ngl = 999 if CTX["n_gpu_layers"] < 0 else CTX["n_gpu_layers"]
    cmd = [exe, str(model), str(npl), "1", *map(str, args), str(ngl), str(PP), str(TG)]
    return float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()[-1])


def ratio(x: list[float], y: list[float]) -> str:
    """Median of each repetition's own ratio (drift between repetitions cancels), with its
    95 % bootstrap interval: the host's noise decides how close a ratio can be placed."""
    r = np.array([u / v for u, v in zip(x, y, strict=True)])
    if len(r) < 5:
        return f"{np.median(r):.3f}"
    boot = np.median(np.random.default_rng(0).choice(r, (2000, len(r))), axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return f"{np.median(r):.3f} [{lo:.2f}, {hi:.2f}]"


def s_tg(trace, npl: int) -> float:
    """Tokens/s over the steps where all npl requests decode one token each: from the last
    request's first token to the first request's last token. With the whole wave's prompt
    in one batch (npl*PP <= n_batch) that is npl*(TG-1) tokens over last - first."""
    start = max(r.token_times[0] for r in trace.requests)
    end = min(r.token_times[-1] for r in trace.requests)
    steps = {t for r in trace.requests for t in r.token_times if start < t <= end}
    return npl * len(steps) / (end - start)


def ours(engine, npl: int, seed: int) -> float:
    spec = W.WorkloadSpec(num_requests=npl, prompt=W.fixed(PP), output=W.fixed(TG), seed=seed)
    trace = engine.run_round(W.build(spec, engine.vocab_size), Strategy.STATIC, npl)
    assert all(r.output_tokens == TG for r in trace.requests)
    return s_tg(trace, npl)


def loop(engine, npl: int) -> float:
    """batched-bench's own loop (random tokens, no sampling, nothing else per step), run
    through llama-cpp-python on our engine's context: the same libraries and settings as
    ours, so ours / loop is the engine's own per-step cost. Uses engine internals."""
    e, rng = engine, np.random.default_rng()
    L.llama_memory_clear(e._mem, True)
    cells = [(j, i) for j in range(npl) for i in range(PP)]
    n_batch = e.knobs.n_batch
    for s in range(0, len(cells), n_batch):  # the prompts, in n_batch chunks
        chunk = cells[s : s + n_batch]
        for k, (j, i) in enumerate(chunk):
            e._seq_ids[k], e._pos[k], e._logit_flags[k] = j, i, i == PP - 1
        e._tok[: len(chunk)] = rng.integers(4, e.vocab_size, len(chunk))
        e._decode(len(chunk))
    e._seq_ids[:npl] = np.arange(npl)
    e._logit_flags[:npl] = 1
    t = time.perf_counter()
    for i in range(TG):
        e._tok[:npl] = rng.integers(4, e.vocab_size, npl)
        e._pos[:npl] = PP + i
        e._decode(npl)
        L.llama_synchronize(e._ctx)
    return npl * TG / (time.perf_counter() - t)


def step_parts(engine, npl: int, rounds: int = 3) -> dict[str, float]:
    """Where one decode step of ours goes, in microseconds (means over the decode steps, as
    S_TG is; medians over ``rounds`` rounds): packing the batch (fill), llama_decode until
    the device is done (decode), reading the logits and sampling (sample), and the rest of
    the step: the engine's Python bookkeeping. Wraps engine internals for the call."""
    part = {"_fill_batch": "fill", "_decode": "decode", "_sample": "sample"}
    calls: dict[str, list[float]] = {name: [] for name in part}
    sizes: list[int] = []  # tokens in each step's batch
    steps, parts = [], []

    def timed(name, fn):
        def wrapper(*args):
            t = time.perf_counter()
            out = fn(*args)
            if name == "_decode":  # CUDA decodes asynchronously: wait for the device
                L.llama_synchronize(engine._ctx)
                sizes.append(args[0])
            calls[name].append(time.perf_counter() - t)
            return out

        return wrapper

    for name in calls:
        setattr(engine, name, timed(name, getattr(engine, name)))
    try:
        for seed in range(rounds):
            for v in (*calls.values(), sizes):
                v.clear()
            steps.append(npl / ours(engine, npl, seed))
            decode = [i for i, n in enumerate(sizes) if n == npl]  # not the prompts' steps
            parts.append({k: statistics.fmean(v[i] for i in decode) for k, v in calls.items()})
    finally:
        for name in calls:
            del engine.__dict__[name]
    out = {part[k]: 1e6 * statistics.median(p[k] for p in parts) for k in calls}
    out["step"] = 1e6 * statistics.median(steps)
    out["rest"] = out["step"] - out["fill"] - out["decode"] - out["sample"]
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--shapes", default="tiny,small")
    p.add_argument("--npl", default="1,8,32")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--raw", help="write every sample to this JSON file")
    p.add_argument("--profile", default="default", help="built-in profile whose knobs both use")
    p.add_argument("--bench", help="llama-batched-bench to run (default: build the CPU one)")
    p.add_argument("--quiet-limit", type=float, default=QUIET["limit"], help="0: do not wait")
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE: a knob of ours only")
    p.add_argument("--steps", action="store_true", help="also split our decode step by part")
    args = p.parse_args()
    QUIET["limit"] = args.quiet_limit
    raw = {}
    npls = [int(x) for x in args.npl.split(",")]
    profile = BUILTIN[args.profile]
    k = profile.typed_knobs()
    CTX.update(
        n_ctx=k.n_ctx,
        n_batch=k.n_batch,
        n_ubatch=k.n_ubatch or k.n_batch,
        n_threads=k.n_threads,
        n_gpu_layers=k.n_gpu_layers,
    )
    bench = args.bench or build(("llama-batched-bench",))["llama-batched-bench"]
    c_exe = compile_c_loop(bench)
    if c_exe and os.environ.get("LLAMA_CPP_LIB_PATH") != os.path.dirname(os.path.abspath(bench)):
        print(
            "note: LLAMA_CPP_LIB_PATH is not the bench's bin/: ours and the C loop differ in build"
        )
    print(f"load average at start: {os.getloadavg()}")
    for name in args.shapes.split(","):
        model = gguf_path(shape(name))
        engine = load(
            profile.with_overrides(
                {
                    "model": f"synthetic:{name}",
                    **CTX,
                    "n_seq_max": max(npls),
                    **parse_overrides(args.set, "--set"),
                }
            ).engine_spec()
        )
        engine.warmup()
        for npl in npls:  # unrecorded: first rounds of each size
            ours(engine, npl, seed=99)
        got = {npl: ([], [], [], []) for npl in npls}
        for rep in range(args.reps):
            for npl in npls:
                got[npl][0].append(quiet(ours, engine, npl, rep))
                got[npl][1].append(quiet(theirs, bench, model, npl))
                got[npl][2].append(quiet(loop, engine, npl))
                if c_exe:
                    got[npl][3].append(quiet(c_loop, c_exe, model, npl))
        parts = {npl: step_parts(engine, npl) for npl in npls} if args.steps else {}
        engine.close()
        raw[name] = got
        if parts:
            raw[f"{name}-steps-us"] = parts
        print(f"\nshape {name}  (S_TG tokens/s, median of {args.reps})")
        head = "| npl | ours | batched-bench | ours/bb | bb loop in-process | ours/loop "
        print(head + "| C loop | ours/C | loop/C |")
        print("|----:" * 9 + "|")
        for npl, (mine, bb, py, c) in got.items():
            row = [f"{statistics.median(mine):.0f}", f"{statistics.median(bb):.0f}"]
            row += [ratio(mine, bb), f"{statistics.median(py):.0f}", ratio(mine, py)]
            row += [f"{statistics.median(c):.0f}", ratio(mine, c), ratio(py, c)] if c else ["-"] * 3
            print(f"| {npl} | " + " | ".join(row) + " |")
        if parts:
            print("\nour decode step by part, microseconds (batched-bench's whole step beside it)")
            print("| npl | step | fill | decode | sample | rest | bb step |")
            print("|----:|-----:|-----:|-------:|-------:|-----:|--------:|")
            for npl, x in parts.items():
                bb = 1e6 * npl / statistics.median(got[npl][1])
                print(
                    f"| {npl} | {x['step']:.0f} | {x['fill']:.0f} | {x['decode']:.0f} "
                    f"| {x['sample']:.0f} | {x['rest']:.0f} | {bb:.0f} |"
                )
    if args.raw:
        with open(args.raw, "w") as f:
            json.dump(raw, f)
    print(f"\nload average at end: {os.getloadavg()}  ({time.strftime('%H:%M:%S')})")


if __name__ == "__main__":
    main()
