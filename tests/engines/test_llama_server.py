"""llama.cpp's own llama-server (built from the source llama-cpp-python vendors, by
``batchperf build-llama-cpp``) under the openai-http engine: the built-in
``llama-server-cpu`` profile runs the suites unchanged. CI builds the server first and
sets BATCHPERF_REQUIRE_LLAMA_SERVER, so that these tests cannot skip there."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.shipped import copy_suites

from pytest_batchperf.device import compute_threads
from pytest_batchperf.engines import load_in_process as load
from pytest_batchperf.engines.llama_build import find_binary
from pytest_batchperf.measure.metrics import round_metrics
from pytest_batchperf.profiles import BUILTIN
from pytest_batchperf.workload import Strategy, WorkloadSpec, build, fixed

ROOT = Path(__file__).parents[2]

if find_binary("llama-server") is None:
    if os.environ.get("BATCHPERF_REQUIRE_LLAMA_SERVER"):
        raise RuntimeError("llama-server is not built: run `batchperf build-llama-cpp`")
    pytest.skip("llama-server is not built (batchperf build-llama-cpp)", allow_module_level=True)
pytest.importorskip("httpx", reason="httpx is not installed (extra 'openai-http')")


@pytest.fixture(scope="module")
def server():
    engine = load(BUILTIN["llama-server-cpu"].engine_spec())
    engine.warmup()
    yield engine
    engine.close()


def test_every_request_gets_exactly_its_tokens(server):
    wl = build(
        WorkloadSpec(num_requests=8, prompt=fixed(32), output=fixed(24), seed=3), server.vocab_size
    )
    trace = server.run_round(wl, Strategy.CONTINUOUS, 4)
    assert [r.output_tokens for r in trace.requests] == [24] * 8
    assert all(r.prompt_tokens == 32 for r in trace.requests)  # token-id prompts, as sent
    m = round_metrics(trace)
    assert m["output_tokens"] == 192 and m["tpot_ms_p50"] > 0
    described = server.describe()
    assert described["server"] == "command" and "{llama_server}" in described["server_command"]
    assert "version" in described["server_version"]
    # -t {threads}: the usable cores less one, so that our client keeps a core
    assert "-t {threads}" in described["server_command"]
    assert described["compute_threads"] == compute_threads()
    argv = server._server_argv("127.0.0.1", 1)
    assert argv[argv.index("-t") + 1] == str(compute_threads())


def test_the_suites_run_unchanged_against_it(pytester):
    copy_suites(pytester.path, "test_batch_sweep.py", "test_variable_length.py")
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--benchmark-disable",
        "--batchperf-profile",
        "llama-server-cpu",
        "--batchperf-batch-sizes",
        "8",
        "--batchperf-rounds",
        "2",
        "--batchperf-warmup",
        "0",
        "-k",
        "sequential or B8-continuous or B8-static or B8-bucketed",
    )
    result.assert_outcomes(passed=6)
    data = json.loads((pytester.path / "reports" / "results.json").read_text())
    assert data["environment"]["engine"]["server"] == "command"
    assert all(c["verdict"] == "new" for c in data["cases"].values())
