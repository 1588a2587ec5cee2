"""The openai-http engine against real servers on loopback: llama-cpp-python's
llama_cpp.server on the synthetic tiny model, and MisbehavingServer (a stdlib HTTP server
in misbehaving_server.py that fails on purpose) for the faults."""

import json
import os
import statistics
import sys
from pathlib import Path

import pytest
from helpers.shipped import copy_suites

from pytest_batchperf.engines import EngineCrashed, EngineError
from pytest_batchperf.engines import load_in_process as load_spec
from pytest_batchperf.engines.openai_http import _redact_argv, prompt_text
from pytest_batchperf.engines.process import free_port
from pytest_batchperf.measure.metrics import round_metrics
from pytest_batchperf.profiles import BUILTIN, Profile
from pytest_batchperf.workload import Arrival, Strategy, WorkloadSpec, build, fixed

httpx = pytest.importorskip("httpx", reason="httpx is not installed (extra 'openai-http')")

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
MISBEHAVING = HERE.parent / "helpers" / "misbehaving_server.py"


def load(profile: Profile):
    return load_spec(profile.engine_spec())


FAIL_ON = 7  # MisbehavingServer fails requests asking for this many tokens


def needs_llama_server():
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")


def misbehaving_profile(*args, **options) -> Profile:
    command = ["{python}", str(MISBEHAVING), "--port", "{port}", "--fail-on", str(FAIL_ON), *args]
    return Profile(
        "misbehaving",
        "openai-http",
        "synthetic:tiny",
        "cpu",
        {"command": command, "startup_timeout_s": 20, **options},
    )


def workload(n=6, out=8, prompt=12, rate=0.0, seed=0):
    arrival = Arrival("poisson", rate=rate) if rate else Arrival()
    spec = WorkloadSpec(
        num_requests=n, prompt=fixed(prompt), output=fixed(out), arrival=arrival, seed=seed
    )
    return build(spec, 4096)


@pytest.fixture(scope="module")
def llama_server():
    needs_llama_server()
    engine = load(BUILTIN["llama-server-tiny"])
    engine.warmup()
    yield engine
    engine.close()


# -- a real llama_cpp.server ---------------------------------------------------------------


def test_streams_every_token_from_llama_cpp_server(llama_server):
    wl = workload(n=6, out=12, prompt=24)
    trace = llama_server.run_round(wl, Strategy.CONTINUOUS, 3)
    for r in trace.requests:
        assert r.error is None
        assert r.output_tokens == 12  # min_tokens kept the server from stopping at EOS
        assert r.arrival <= r.scheduled <= r.token_times[0]
        assert r.token_times == sorted(r.token_times)
    m = round_metrics(trace)
    assert m["output_tokens"] == 72 and m["ttft_ms_p50"] > 0 and m["tpot_ms_p50"] > 0
    assert llama_server.describe()["prompt_format"] == "text"  # it refuses token-id prompts


def test_each_round_records_the_clients_share_of_a_core():
    """A client that mostly waits for a slow server uses a small share of its core; one near
    a whole core gets a warning that it, not the server, may set the pace."""
    from pytest_batchperf.measure.runner import client_warnings

    engine = load(misbehaving_profile("--token-delay", "0.05"))
    try:
        trace = engine.run_round(workload(n=4, out=6), Strategy.CONTINUOUS, 4)
    finally:
        engine.close()
    busy = round_metrics(trace)["client_cpu_pct"]
    assert 0 < busy < 50
    assert client_warnings({"client_cpu_pct": [busy]}) == []
    (warning,) = client_warnings({"client_cpu_pct": [70.0, 93.0, 95.0]})
    assert warning.startswith("the HTTP client used 93 % of a core")


def test_continuous_refills_and_caps_requests_in_flight(llama_server):
    trace = llama_server.run_round(workload(n=6), Strategy.CONTINUOUS, 2)
    spans = [(r.scheduled, r.finished) for r in trace.requests]
    for t, _ in spans:
        assert sum(1 for s, f in spans if s <= t < f) <= 2
    first_done = min(f for _, f in spans)
    third = sorted(s for s, _ in spans)[2]
    assert third >= first_done  # the third starts only when a slot frees


def test_static_waits_for_the_whole_wave(llama_server):
    trace = llama_server.run_round(workload(n=6), Strategy.STATIC, 3)
    by_id = {r.request_id: r for r in trace.requests}
    assert [len(w) for w in trace.waves] == [3, 3]
    first_end = max(by_id[r.id].finished for r in trace.waves[0])
    assert min(by_id[r.id].scheduled for r in trace.waves[1]) >= first_end


def test_requests_are_sent_at_their_arrival_times(llama_server):
    wl = workload(n=5, rate=20.0, seed=2)
    trace = llama_server.run_round(wl, Strategy.CONTINUOUS, 8)
    due = {r.id: r.arrival_s for r in wl.requests}
    for r in trace.requests:
        late = (r.scheduled - trace.start) - due[r.request_id]
        assert 0 <= late < 0.25  # never early; late only by event-loop latency


def test_priority_classes_are_measured_apart(llama_server):
    spec = WorkloadSpec(num_requests=6, prompt=fixed(8), output=fixed(4), priority_classes=2)
    trace = llama_server.run_round(build(spec, 4096), Strategy.CONTINUOUS, 2)
    m = round_metrics(trace)
    assert m["ttft_ms_p95_prio0"] > 0 and m["ttft_ms_p95_prio1"] > 0
    # llama_cpp.server takes no priority, so the engine neither claims it nor sends it
    assert not llama_server.supports("priority")
    assert "priority" not in llama_server._body(build(spec, 4096).requests[1])


def test_load_suite_on_llama_server(pytester):
    """The latency-under-load suite on llama-server-tiny: TTFT p95 far above saturation
    is well above TTFT p95 far below it, and both are in results.json."""
    needs_llama_server()
    copy_suites(pytester.path, "test_latency_under_load.py")
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--benchmark-disable",
        "--batchperf-profile",
        "llama-server-tiny",
        "--batchperf-warmup",
        "0",
        "--batchperf-rounds",
        "1",
        "-k",
        "saturation or 0.25x or 4x",
        "-W",
        "ignore",
    )
    result.assert_outcomes(passed=3)
    cases = json.loads((pytester.path / "reports" / "results.json").read_text())["cases"]

    def ttft_p95(load):  # median over the case's rounds
        (case,) = [c for cid, c in cases.items() if f"[{load}]" in cid]
        return statistics.median(x for run in case["metrics"]["ttft_ms_p95"]["rounds"] for x in run)

    assert ttft_p95("4x") > 2 * ttft_p95("0.25x")
    sat = next(c for cid, c in cases.items() if "test_saturation" in cid)
    assert sat["metrics"]["throughput_req_s"]["rounds"][0][0] > 0


# -- MisbehavingServer: faults give one clear error and the next case runs ---------------


def test_api_key_is_sent_but_never_described(monkeypatch):
    monkeypatch.setenv("BATCHPERF_TEST_KEY", "sekrit-123")
    engine = load(misbehaving_profile("--api-key", "sekrit-123", api_key_env="BATCHPERF_TEST_KEY"))
    try:
        engine.warmup()
        trace = engine.run_round(workload(n=2), Strategy.CONTINUOUS, 2)
        assert all(r.output_tokens == 8 for r in trace.requests)
        assert "sekrit" not in json.dumps(engine.describe())
    finally:
        engine.close()


def test_missing_api_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("BATCHPERF_NO_SUCH_KEY", raising=False)
    with pytest.raises(EngineError, match=r"\$BATCHPERF_NO_SUCH_KEY, which is not set"):
        load(misbehaving_profile(api_key_env="BATCHPERF_NO_SUCH_KEY"))


def test_redacts_secret_flags():
    assert _redact_argv(["srv", "--api-key", "k1", "--api_key=k2", "--port", "80"]) == [
        "srv",
        "--api-key",
        "***",
        "--api_key=***",
        "--port",
        "80",
    ]


def test_text_prompts_keep_shared_prefixes():
    a, b = prompt_text((5, 6, 7, 8)), prompt_text((5, 6, 7, 9))
    assert len(a) == 4 and a[:3] == b[:3] and a != b


def test_server_that_exits_at_once():
    with pytest.raises(EngineError) as err:
        load(misbehaving_profile("--exit-at-start"))
    msg = str(err.value)
    assert "exited before it was ready" in msg and "exit code 3" in msg
    assert "cannot load model: no such file" in msg  # the server's own last log line


def test_server_that_never_answers():
    with pytest.raises(EngineError) as err:
        load(misbehaving_profile("--how", "hang", startup_timeout_s=2))
    msg = str(err.value)
    assert "did not answer within 2s" in msg and "listening on 127.0.0.1" in msg


def test_url_nobody_listens_on():
    profile = Profile(
        "dead",
        "openai-http",
        knobs={"url": f"http://127.0.0.1:{free_port()}/v1", "startup_timeout_s": 1},
    )
    with pytest.raises(EngineError, match=r"does not answer GET /v1/models"):
        load(profile)


@pytest.fixture(scope="module")
def broken_servers():
    """One MisbehavingServer per failure mode, started once for the module."""
    engines = {}
    yield lambda how: engines.setdefault(how, _started(misbehaving_profile("--how", how)))
    for e in engines.values():
        e.close()


def _started(profile):
    engine = load(profile)
    engine.warmup()
    return engine


@pytest.mark.parametrize(
    "how, expected",
    [
        ("500", r"HTTP 500 from the server: .*internal error on purpose"),
        ("error-event", r"error mid-stream after 2 tokens: KV cache exhausted on purpose"),
        ("cut", r"RemoteProtocolError|cut short \(connection closed\) after 2 of 7"),
        ("done-early", r"cut short with \[DONE\] after 2 of 7 tokens"),
    ],
)
def test_a_failing_request_errors_the_round_with_the_server_log(broken_servers, how, expected):
    engine = broken_servers(how)
    wl = build(WorkloadSpec(num_requests=4, prompt=fixed(8), output=fixed(FAIL_ON), seed=1), 4096)
    with pytest.raises(EngineError, match=expected) as err:
        engine.run_round(wl, Strategy.CONTINUOUS, 2)
    assert "server log" in str(err.value) and "on purpose" in str(err.value).split("server log")[1]
    # the engine is still usable: a workload the server does not fail on runs
    ok = engine.run_round(workload(n=3, out=5), Strategy.CONTINUOUS, 2)
    assert [r.output_tokens for r in ok.requests] == [5, 5, 5]


def test_a_server_that_dies_mid_round_is_restarted():
    engine = load(misbehaving_profile("--how", "exit"))
    try:
        wl = build(WorkloadSpec(num_requests=2, prompt=fixed(8), output=fixed(FAIL_ON)), 4096)
        with pytest.raises(EngineCrashed, match=r"exit code 7"):
            engine.run_round(wl, Strategy.CONTINUOUS, 1)
        ok = engine.run_round(workload(n=2, out=4), Strategy.CONTINUOUS, 2)
        assert [r.output_tokens for r in ok.requests] == [4, 4]
    finally:
        engine.close()


def test_a_server_that_dies_mid_round_has_its_workers_stopped_at_once():
    """vllm serve's engine core is the API server's child: when the server dies, the whole
    process group is stopped at once, not at the next case (the orphan holds the GPU)."""
    import psutil

    engine = load(misbehaving_profile("--how", "exit", "--worker"))
    try:
        (line,) = [x for x in engine.server.last_lines().splitlines() if "worker pid" in x]
        worker = psutil.Process(int(line.split()[-1]))
        wl = build(WorkloadSpec(num_requests=2, prompt=fixed(8), output=fixed(FAIL_ON)), 4096)
        with pytest.raises(EngineCrashed, match=r"exit code 7"):
            engine.run_round(wl, Strategy.CONTINUOUS, 1)
        gone, _ = psutil.wait_procs([worker], timeout=1)
        assert gone or worker.status() == psutil.STATUS_ZOMBIE, "the worker outlived the round"
    finally:
        engine.close()


def test_a_hung_request_errors_the_round_and_the_next_gets_a_fresh_server():
    """A server that stops answering mid-stream is alive but useless: the round errors
    after request_timeout_s, and the server is replaced, not reused."""
    engine = load(misbehaving_profile("--how", "stall", request_timeout_s=1))
    try:
        hung = engine.server.pid
        wl = build(WorkloadSpec(num_requests=2, prompt=fixed(8), output=fixed(FAIL_ON)), 4096)
        with pytest.raises(EngineError, match=r"no data for 1s .*the server was stopped"):
            engine.run_round(wl, Strategy.CONTINUOUS, 1)
        ok = engine.run_round(workload(n=2, out=4), Strategy.CONTINUOUS, 2)
        assert [r.output_tokens for r in ok.requests] == [4, 4]
        assert engine.server.pid != hung
    finally:
        engine.close()


def test_a_killed_engine_process_takes_its_server_down():
    """A hung round gets the engine's child process SIGKILLed (no cleanup runs there):
    the server it started must not outlive it."""
    import signal

    import psutil

    from pytest_batchperf.engines import start

    engine = start(misbehaving_profile().engine_spec(), timeout_s=60)
    try:
        child = psutil.Process(engine.pids()[0])
        (server,) = [
            p
            for p in child.children(recursive=True)
            if "misbehaving_server.py" in " ".join(p.cmdline())
        ]
        os.kill(child.pid, signal.SIGKILL)
        gone, _ = psutil.wait_procs([server], timeout=10)
        assert gone, "the server outlived the engine process"
    finally:
        engine.close()


SESSION_SUITE = """
from pytest_batchperf.workload import WorkloadSpec, fixed

def wl(out):
    return WorkloadSpec(num_requests=3, prompt=fixed(8), output=fixed(out), seed=1)

def test_a_ok(batchperf):
    batchperf.run(wl(5), "continuous", 2)

def test_b_server_crashes(batchperf):
    batchperf.run(wl({fail_on}), "continuous", 2)

def test_c_ok_again(batchperf):
    batchperf.run(wl(6), "continuous", 2)
"""


def test_session_goes_on_after_a_server_crash(pytester):
    command = json.dumps(
        [
            sys.executable,
            str(MISBEHAVING),
            "--port",
            "{port}",
            "--fail-on",
            str(FAIL_ON),
            "--how",
            "exit",
        ]
    )
    pytester.makefile(
        ".toml",
        pyproject=f"""
[tool.batchperf.profiles.mis]
engine = "openai-http"
command = {command}
startup_timeout_s = 20
""",
    )
    pytester.makepyfile(test_suite=SESSION_SUITE.format(fail_on=FAIL_ON))
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--benchmark-disable",
        "--batchperf-profile",
        "mis",
        "--batchperf-rounds",
        "1",
        "--batchperf-warmup",
        "0",
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_b_server_crashes*engine error*exit code 7*"])
    assert "openai_http.py" not in result.stdout.str()  # no traceback through the engine
    assert os.path.exists(pytester.path / "reports" / "results.json")


# -- server faults in a session: one line each, no stray process, the next case runs -----

FAULT_SUITE = """
from pytest_batchperf.workload import WorkloadSpec, fixed

WL = WorkloadSpec(num_requests=2, prompt=fixed(8), output=fixed(4), seed=1)

def test_a(batchperf):
    batchperf.run(WL, "continuous", 2)

def test_b(batchperf):
    batchperf.run(WL, "continuous", 2)
"""


def _fault_session(pytester, knobs: str):
    pytester.makefile(
        ".toml",
        pyproject=f"""
[tool.batchperf.profiles.faulty]
engine = "openai-http"
{knobs}
""",
    )
    pytester.makepyfile(test_suite=FAULT_SUITE)
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--benchmark-disable",
        "--batchperf-profile",
        "faulty",
        "--batchperf-rounds",
        "1",
        "--batchperf-warmup",
        "0",
    )
    out = result.stdout.str()
    result.assert_outcomes(failed=2)  # both cases ran, each failed with its own line
    for case in ("test_a", "test_b"):
        assert (
            f"test_suite.py::{case}: engine error: engine of profile 'faulty' failed to start: "
            in out
        )
    assert "Traceback" not in out and "openai_http.py" not in out
    assert os.path.exists(pytester.path / "reports" / "results.json")
    return out


def _no_stray(marker: str) -> None:
    import psutil

    stray = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if marker in " ".join(p.info["cmdline"] or [])
    ]
    assert not stray, f"processes left behind: {stray}"


def test_session_with_a_server_that_never_becomes_ready(pytester):
    command = json.dumps(
        [
            sys.executable,
            str(MISBEHAVING),
            "--port",
            "{port}",
            "--how",
            "hang",
            "--tag",
            "never-ready-fault",
        ]
    )
    out = _fault_session(pytester, f"command = {command}\nstartup_timeout_s = 2")
    assert "did not answer within 2s (startup_timeout_s); it was stopped" in out
    _no_stray("never-ready-fault")


def test_session_with_a_binary_missing_from_path(pytester):
    out = _fault_session(pytester, 'command = ["no-such-llama-server", "--port", "{port}"]')
    assert "cannot start server no-such-llama-server --port" in out
    assert "no-such-llama-server not found (not on PATH?)" in out


def test_session_with_the_port_already_in_use(pytester):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = json.dumps(
            [sys.executable, str(MISBEHAVING), "--port", "{port}", "--tag", "port-fault"]
        )
        out = _fault_session(pytester, f"command = {command}\nport = {port}")
    assert f"port {port} on 127.0.0.1 is already in use" in out
    _no_stray("port-fault")
