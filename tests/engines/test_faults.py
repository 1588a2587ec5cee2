"""Faults lose nothing and say what happened: OOM at a batch size, an engine crash or hang
mid-case, Ctrl-C, two runs saving one baseline at once, a baseline that cannot be written.

Where the plugin is involved, pytest runs (via pytester) on the real default profile: the
llama-cpp engine on the tiny synthetic model, in its child process (engines/isolated.py).
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_batchperf.judge import baseline
from pytest_batchperf.judge.results import CaseResult, MetricRuns, RunResults
from pytest_batchperf.measure import environment

pytest.importorskip("llama_cpp", reason="the fault tests run the llama-cpp engine")

# One llama.cpp thread: two spinning threads on a busy 2-core runner (or two runs at once)
# slow rounds down tens of times, which would only make these tests slow and flaky.
ARGS = ("-p", "no:cacheprovider", "--benchmark-disable", "--batchperf-set", "n_threads=1")

HEADER = """
import os, signal, threading, time
from pathlib import Path
import pytest
from pytest_batchperf.workload import WorkloadSpec, fixed

WL = WorkloadSpec(num_requests=4, prompt=fixed(8), output=fixed(8), seed=1)
"""

# The fault lands on an event, not a timer: right after the case's first measured round
# (whatever the CPU's speed); the rounds left then all meet the dead or stopped engine.
FAULTED = (
    HEADER
    + """
from pytest_batchperf.measure import runner


@pytest.mark.batchperf(rounds=50, warmup=1)
def test_a_faulted(batchperf, monkeypatch):
    fired = []
    class FaultAfterFirstRound(runner.ResourceSampler):
        def __init__(self, pids, *args, **kwargs):
            super().__init__(pids, *args, **kwargs)
            self.engine_pids = pids  # the measuring engine's

        def __exit__(self, *exc):
            out = super().__exit__(*exc)
            if exc[0] is None and not fired:
                fired.append(os.kill(self.engine_pids()[0], signal.{signal}))
            return out

    monkeypatch.setattr(runner, "ResourceSampler", FaultAfterFirstRound)
    batchperf.run(WL, "continuous", 2)


@pytest.mark.batchperf(rounds=2, warmup=1)
def test_b_next(batchperf, batchperf_engine):
    batchperf.run(WL, "continuous", 2)
"""
)


def output(result) -> str:
    return result.stdout.str() + result.stderr.str()


def results_json(root: Path) -> dict:
    return json.loads((root / "reports" / "results.json").read_text())


def test_oom_batch_size_is_skipped_and_the_sweep_goes_on(pytester):
    pytester.makepyfile(
        test_sweep=HEADER
        + """
@pytest.mark.batchperf(rounds=2, warmup=0)
def test_sweep(batchperf, batch_size):
    batchperf.run(WL, "continuous", batch_size)
"""
    )
    result = pytester.runpytest(
        *ARGS, "-rs", "--batchperf-set", "n_seq_max=4", "--batchperf-batch-sizes", "8,2"
    )
    out = output(result)
    result.assert_outcomes(passed=1, skipped=1)
    assert "batch size 8 does not fit: batch size 8 exceeds the profile's n_seq_max=4" in out
    cases = results_json(pytester.path)["cases"]
    assert [cid for cid, c in cases.items() if c["metrics"]] == ["test_sweep.py::test_sweep[B2]"]
    assert "Traceback" not in out


def test_engine_killed_mid_case_errors_that_case_and_the_next_one_runs(pytester):
    pytester.makepyfile(test_crash=FAULTED.format(signal="SIGKILL"))
    result = pytester.runpytest(*ARGS)
    out = output(result)
    result.assert_outcomes(passed=1, failed=1)
    # the kill lands between rounds, or once the next round was sent: either says so
    assert re.search(r"engine error: engine process died (between rounds|while trying to)", out)
    assert "it is restarted for the next case (engine killed by signal 9)" in out
    cases = results_json(pytester.path)["cases"]
    crashed, after = cases["test_crash.py::test_a_faulted"], cases["test_crash.py::test_b_next"]
    assert crashed["verdict"] == "error" and "killed by signal 9" in crashed["error"]
    assert after["verdict"] == "new" and after["metrics"]["output_tokens"]["rounds"] == [[32, 32]]
    assert "Traceback" not in out


def test_hung_engine_times_out_and_the_next_case_runs(pytester):
    pytester.makepyfile(test_hang=FAULTED.format(signal="SIGSTOP"))
    started = time.monotonic()
    result = pytester.runpytest(*ARGS, "--batchperf-timeout", "5")
    out = output(result)
    result.assert_outcomes(passed=1, failed=1)
    assert "within 5s (hung?); it was killed and is restarted for the next case" in out
    assert results_json(pytester.path)["cases"]["test_hang.py::test_b_next"]["metrics"]
    assert time.monotonic() - started < 120
    assert "Traceback" not in out


def _saved_baseline(root: Path, case_id: str) -> Path:
    path = baseline.baseline_path(root / "baselines", environment.hardware_class("cpu"), "default")
    run = RunResults(
        "default",
        environment.hardware_class("cpu"),
        {},
        {
            case_id: CaseResult(
                case_id,
                metrics={"output_tok_s": MetricRuns.build("output_tok_s", [[100.0, 101.0]])},
            )
        },
    )
    baseline.save(path, run)
    return path


def _default_sigint() -> None:
    # A shell's background job ignores SIGINT and its children inherit that; Python then
    # installs no KeyboardInterrupt handler, and the Ctrl-C this test sends would be lost.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _pytest_process(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", *ARGS, *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_default_sigint,
    )


def test_ctrl_c_writes_results_so_far_and_leaves_the_baseline_alone(pytester):
    pytester.makepyfile(
        test_long=HEADER
        + """
@pytest.mark.batchperf(rounds=2, warmup=0)
def test_1_quick(batchperf):
    batchperf.run(WL, "continuous", 2)


@pytest.mark.batchperf(rounds=100, warmup=0)
def test_2_endless(batchperf):
    Path("started").touch()
    # A round of a minute or more: Ctrl-C must not wait for it (nor 30 s for the child).
    batchperf.run(WorkloadSpec(num_requests=16, prompt=fixed(8), output=fixed(4000)), "static", 1)
"""
    )
    base = _saved_baseline(pytester.path, "test_long.py::test_1_quick")
    before = base.read_bytes()
    proc = _pytest_process(pytester.path, "--batchperf-save")
    deadline = time.monotonic() + 120
    while not (pytester.path / "started").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.1)
    time.sleep(1.0)  # well inside test_2's rounds
    interrupted_at = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=60)[0]
    assert time.monotonic() - interrupted_at < 25, "Ctrl-C must not wait for the round"
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    run = results_json(pytester.path)
    assert run["interrupted"] is True
    assert run["cases"]["test_long.py::test_1_quick"]["metrics"]["output_tokens"]["rounds"] == [
        [32, 32]
    ]
    assert "interrupted: baseline left untouched" in out
    assert base.read_bytes() == before


def test_two_runs_saving_one_baseline_at_once_keep_both(pytester):
    pytester.makepyfile(
        test_pair=HEADER
        + """
@pytest.mark.batchperf(rounds=2, warmup=0)
@pytest.mark.parametrize("strategy", ["static", "continuous"])
def test_case(batchperf, strategy):
    batchperf.run(WL, strategy, 2)
"""
    )
    base = _saved_baseline(pytester.path, "test_pair.py::already_there")
    procs = [
        _pytest_process(
            pytester.path, "--batchperf-save", "--batchperf-report", "none", "-k", strategy
        )
        for strategy in ("static", "continuous")
    ]
    for p in procs:
        out = p.communicate(timeout=180)[0]
        assert p.returncode == 0, out
    saved = baseline.load(base)
    assert set(saved.cases) == {
        "test_pair.py::already_there",
        "test_pair.py::test_case[static]",
        "test_pair.py::test_case[continuous]",
    }
    assert not [p for p in base.parent.iterdir() if p.suffix == ".tmp"]


_SAVER = """
import sys
from pytest_batchperf.judge import baseline
from pytest_batchperf.judge.results import CaseResult, MetricRuns, RunResults
path, who = sys.argv[1], sys.argv[2]
for i in range(10):
    cid = f"{who}::{i}"
    m = {"output_tok_s": MetricRuns.build("output_tok_s", [[float(i + 1)] * 3])}
    baseline.save(path, RunResults("p", "cpu", {"saver": who}, {cid: CaseResult(cid, metrics=m)}))
"""


def test_many_processes_saving_at_once_lose_nothing(tmp_path):
    path = tmp_path / "cpu" / "p.json"
    procs = [subprocess.Popen([sys.executable, "-c", _SAVER, str(path), f"w{k}"]) for k in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    saved = baseline.load(path)
    assert set(saved.cases) == {f"w{k}::{i}" for k in range(4) for i in range(10)}


def _old_baseline(tmp_path) -> tuple[Path, bytes]:
    path = _saved_baseline(tmp_path, "old::case")
    return path, path.read_bytes()


def _new_run() -> RunResults:
    return RunResults(
        "default",
        "cpu",
        {},
        {
            "new::case": CaseResult(
                "new::case", metrics={"output_tok_s": MetricRuns.build("output_tok_s", [[1.0]])}
            )
        },
    )


@pytest.mark.parametrize(
    "code, words",
    [(errno.ENOSPC, "no space left on device"), (errno.EROFS, "read-only file system")],
)
def test_disk_full_or_read_only_at_the_rename_changes_nothing(tmp_path, monkeypatch, code, words):
    path, before = _old_baseline(tmp_path)

    def fail(*_):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(baseline.os, "replace", fail)
    with pytest.raises(baseline.BaselineError) as info:
        baseline.save(path, _new_run())
    assert str(info.value) == f"{path}: cannot write baseline: {words}; nothing was changed"
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".lock"]


def test_baseline_directory_that_is_a_file(tmp_path):
    blocker = tmp_path / "baselines"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(
        baseline.BaselineError, match="cannot write baseline: .*nothing was changed"
    ):
        baseline.save(blocker / "cpu" / "default.json", _new_run())


def test_disk_full_during_a_real_save_fails_the_run_clearly(pytester):
    """A real pytest run that hits a file-size limit (EFBIG, as a full disk) when it saves."""
    pytester.makeconftest("""
import resource, signal
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))
""")
    pytester.makepyfile(
        test_full=HEADER
        + """
@pytest.mark.batchperf(rounds=2, warmup=0)
def test_case(batchperf):
    batchperf.run(WL, "continuous", 2)
"""
    )
    base = _saved_baseline(pytester.path, "test_full.py::other")
    before = base.read_bytes()
    proc = _pytest_process(pytester.path, "--batchperf-save")  # a pipe: not limited
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, out
    assert (
        f"batchperf: ERROR: {base}: cannot write baseline: File too large; nothing was changed"
        in out
    )
    assert "batchperf: ERROR: cannot write " in out and "File too large" in out
    assert base.read_bytes() == before
    assert not [p for p in base.parent.iterdir() if p.suffix == ".tmp"]
    assert "Traceback" not in out


def test_baseline_dir_under_a_file_is_one_line_before_anything_runs(pytester):
    (pytester.path / "blocker").write_text("not a directory")
    pytester.makepyfile(
        test_x=HEADER
        + """
def test_case(batchperf):
    batchperf.run(WL, "continuous", 2)
"""
    )
    result = pytester.runpytest(*ARGS, "--batchperf-baseline-dir", "blocker/baselines")
    out = output(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, out
    assert "cannot read baseline: Not a directory" in out and "Traceback" not in out


# ------------------------------------------------------------------ noise guards


class WarmingUpFakeEngine:
    """A FAKE engine for the warm-up logic only: round k takes ``durations[k]`` seconds
    of virtual time (the last one repeats)."""

    device, vocab_size = "cpu", 512

    def __init__(self, durations):
        self.durations, self.calls = list(durations), 0

    def pids(self):
        return [os.getpid()]

    def run_round(self, workload, strategy, batch_size):
        from pytest_batchperf.measure.trace import RequestTrace, RoundTrace

        d = self.durations[min(self.calls, len(self.durations) - 1)]
        self.calls += 1
        reqs = [
            RequestTrace(
                r.id,
                r.prompt_len,
                0.0,
                0.0,
                [d * (i + 1) / r.max_output_tokens for i in range(r.max_output_tokens)],
            )
            for r in workload.requests
        ]
        return RoundTrace(0.0, d, reqs)


def _measure(durations, warmup=1, rounds=3):
    from pytest_batchperf.measure.runner import Rounds, measure_run
    from pytest_batchperf.workload import CaseSpec, Strategy, WorkloadSpec, fixed

    engine = WarmingUpFakeEngine(durations)
    spec = CaseSpec(
        WorkloadSpec(num_requests=2, prompt=fixed(4), output=fixed(4)), Strategy.CONTINUOUS, 2
    )
    m = measure_run(engine, spec, Rounds(rounds, warmup))
    return engine.calls - rounds, m


@pytest.mark.parametrize(
    "durations, warmup, expected",
    [
        ([1.0], 1, 2),  # settled at once: two rounds to know it
        ([3.0, 1.0], 1, 3),  # a cold first round: one more
        ([3.0, 1.0, 1.0], 2, 3),
        ([1.0], 3, 3),  # never fewer than asked
        ([1.0], 0, 0),  # warmup=0 means none
    ],
)
def test_warm_up_runs_until_two_rounds_agree(durations, warmup, expected):
    calls, m = _measure(durations, warmup)
    assert calls == expected and not m.warnings


def test_warm_up_that_never_settles_is_capped_and_warned():
    calls, m = _measure([4.0, 2.0, 1.0, 0.5, 0.25, 0.25])
    assert calls == 4
    assert any(w.startswith("warm-up did not settle in 4 rounds") for w in m.warnings)


def test_noise_warnings_reach_the_terminal_summary_and_results(sim_project):
    from helpers.sim import run_sim

    p = sim_project(noise=0.4)
    result = run_sim(p, "-k", "B2-static", "--batchperf-rounds", "6")
    result.stdout.fnmatch_lines(
        [
            "*= batchperf =*",
            "*WARNING test_suite.py::test_sweep[[]B2-static[]]: "
            "run 1: output_tok_s varies *% round to round (> 10%)*",
        ]
    )
    case = results_json(p.path)["cases"]["test_suite.py::test_sweep[B2-static]"]
    assert any("round to round" in w for w in case["warnings"])
    assert "warning: run 1: output_tok_s varies" in (p.path / "reports" / "summary.md").read_text()
