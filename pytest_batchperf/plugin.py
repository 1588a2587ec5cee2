"""pytest hooks and fixtures. Thin: the logic lives in session.py, runner.py and gate.py."""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import replace
from typing import Any

import pytest

from . import progress, report
from .baseline import BaselineError
from .decision import Verdict
from .engines.base import EngineError, EngineUnavailable, OutOfMemory
from .catalog import parse_tolerances
from .gate import failure_message
from .metrics import SLO
from .options import DEFAULT_BATCH_SIZES, Options, add_options
from .profiles import ProfileError
from .results import CaseResult
from .runner import CaseSpec, measure, to_case
from .session import BatchperfSession
from .strategies import Strategy
from .workload import WorkloadSpec

SESSION = pytest.StashKey[BatchperfSession]()
PROGRESS = pytest.StashKey[progress.Progress]()


def pytest_addoption(parser):
    add_options(parser)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "batchperf(rounds=None, warmup=None, tolerance=None, batch_sizes=None): per-test "
        "settings of pytest-batchperf (tolerance is a {metric: percent} dict)",
    )
    try:
        options = Options.from_config(config)
    except (ValueError, ProfileError) as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[SESSION] = BatchperfSession(options, config.rootpath)


def _marker(node) -> dict[str, Any]:
    m = node.get_closest_marker("batchperf")
    return dict(m.kwargs) if m else {}


def pytest_generate_tests(metafunc):
    if "batch_size" in metafunc.fixturenames and not any(
        "batch_size" in getattr(c, "params", {}) for c in metafunc._calls
    ):
        sizes = _marker(metafunc.definition).get("batch_sizes") or _batch_sizes(
            metafunc.config.stash[SESSION])
        metafunc.parametrize("batch_size", list(sizes), ids=[f"B{b}" for b in sizes])


def _batch_sizes(s: BatchperfSession) -> tuple[int, ...]:
    """The flag's or ini's sizes, else the profile's, else the plugin's defaults."""
    if s.options.batch_sizes:
        return s.options.batch_sizes
    try:
        s.prepare()
    except (ProfileError, BaselineError, ValueError):
        # pytest_collection_finish reports it as a usage error, in one line.
        return DEFAULT_BATCH_SIZES
    return s.profile.batch_sizes or DEFAULT_BATCH_SIZES


def pytest_collection_finish(session):
    cases = sum("batchperf" in getattr(item, "fixturenames", ()) for item in session.items)
    shown = progress.for_pytest(session.config, cases) if cases else None
    if shown is not None:
        session.config.stash[PROGRESS] = shown
    if cases:
        try:
            session.config.stash[SESSION].prepare()
        except (ProfileError, BaselineError, ValueError) as exc:
            raise pytest.UsageError(str(exc)) from None


@pytest.fixture(scope="session")
def batchperf_session(pytestconfig) -> BatchperfSession:
    s = pytestconfig.stash[SESSION]
    s.prepare()
    return s


@pytest.fixture(scope="session")
def engine(batchperf_session):
    """The profile's engine, loaded once per session and shared by every case."""
    try:
        return batchperf_session.engine()
    except EngineUnavailable as exc:
        pytest.skip(str(exc))
    except EngineError as exc:
        pytest.fail(f"engine {batchperf_session.profile.name!r} failed to start: {exc}",
                    pytrace=False)


class Batchperf:
    """The ``batchperf`` fixture: runs one case and judges it against the baseline."""

    def __init__(self, request, session: BatchperfSession, benchmark=None):
        self._request = request
        self._session = session
        self._benchmark = benchmark
        self._pedantic_used = False
        self.last: CaseResult | None = None

    @property
    def profile(self):
        return self._session.profile

    @property
    def engine(self):
        return self._request.getfixturevalue("engine")

    def baseline_params(self) -> dict | None:
        """This case's params in the baseline, or None where the baseline lacks the case."""
        return self._session.baseline_params(self._request.node.nodeid)

    def _drive(self):
        bench = self._benchmark
        if bench is None or self._pedantic_used:
            return None
        if getattr(bench, "disabled", False):
            # --benchmark-disable or xdist: pedantic would run a single round, so we drive
            # the rounds; mark the fixture used so it does not warn that it was not.
            bench._mode = "batchperf"
            return None
        self._pedantic_used = True

        def run_rounds(fn, rounds, warmup):
            bench.pedantic(fn, rounds=rounds, warmup_rounds=warmup, iterations=1)

        return run_rounds

    def run(self, workload: WorkloadSpec, strategy: Strategy | str, batch_size: int,
            slo: SLO | None = None) -> CaseResult:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise pytest.UsageError(f"batch size must be a positive integer, got {batch_size!r}")
        opts = _marker(self._request.node)
        o = self._session.options
        try:  # a misspelt metric must not silently keep its default tolerance
            tolerances = parse_tolerances(f"{k}={v}" for k, v in (opts.get("tolerance") or {}).items())
        except ValueError as exc:
            raise pytest.UsageError(f"@pytest.mark.batchperf(tolerance=...): {exc}") from None
        spec = CaseSpec(self.profile.sized(workload, batch_size), Strategy.parse(strategy),
                        batch_size, slo or SLO(),
                        rounds=int(opts.get("rounds") or o.rounds),
                        warmup=int(opts.get("warmup") if opts.get("warmup") is not None else o.warmup))
        engine = self.engine
        node = self._request.node
        started = time.monotonic()
        shown = self._request.config.stash.get(PROGRESS, None)
        drive = self._drive()
        if shown is not None:
            shown.start(node.nodeid, batch_size, spec.strategy.value, spec.rounds)
            drive = shown.rounds(drive)
        try:
            measured = measure(engine, spec, drive)
        except OutOfMemory as exc:
            self._session.record_infeasible(node.nodeid, _suite(node), spec.params(), str(exc))
            pytest.skip(f"batch size {batch_size} does not fit: {exc}")
        except EngineUnavailable as exc:  # e.g. a strategy this engine cannot run
            pytest.skip(str(exc))
        except EngineError as exc:
            self._session.record(CaseResult(node.nodeid, _suite(node), spec.params(), error=str(exc)))
            pytest.fail(f"{node.nodeid}: engine error: {exc}", pytrace=False)
        finally:
            if shown is not None:
                shown.finish()
        case = to_case(node.nodeid, _suite(node), spec, measured, started)
        judged = self._session.record(case, tolerances)
        self.last = judged
        self._publish(judged)
        policy = self._session.policy.merged(tolerances)
        if judged.verdict is Verdict.INCONCLUSIVE and not policy.fails(judged.verdict):
            warnings.warn(failure_message(judged, replace(policy, strict=True)), stacklevel=2)
        if policy.fails(judged.verdict) and not self._session.options.save:
            pytest.fail(failure_message(judged, policy), pytrace=False)
        return judged

    def _publish(self, case: CaseResult) -> None:
        """Medians into pytest-benchmark's extra_info and JUnit properties."""
        medians = {name: m.median for name, m in case.metrics.items()}
        if self._benchmark is not None:
            self._benchmark.extra_info.update(
                {"batchperf_verdict": case.verdict.value, **case.params, **medians})
        self._request.node.user_properties.append(("batchperf.verdict", case.verdict.value))
        for name, value in sorted(medians.items()):
            self._request.node.user_properties.append((f"batchperf.{name}", f"{value:.6g}"))


def _suite(node) -> str:
    return f"{node.path.stem}::{getattr(node, 'originalname', node.name)}"


@pytest.fixture
def batchperf(request, batchperf_session) -> Batchperf:
    bench = None
    if "benchmark" in request.fixturenames or request.config.pluginmanager.hasplugin("benchmark"):
        try:
            bench = request.getfixturevalue("benchmark")
        except pytest.FixtureLookupError:
            bench = None
    return Batchperf(request, batchperf_session, bench)


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(optionalhook=True)  # an xdist hook: unknown where xdist is not installed
def pytest_testnodedown(node, error):
    """xdist controller: collect the cases a worker measured."""
    data = getattr(node, "workeroutput", {}).get("batchperf")
    if data:
        s = node.config.stash[SESSION]
        for cid, d in json.loads(data).items():
            s.cases[cid] = CaseResult.from_dict(cid, d)
        if s.profile is None:
            s.prepare()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    config = session.config
    s = config.stash.get(SESSION, None)
    if s is None:
        return
    s.close()
    if _is_worker(config):
        config.workeroutput["batchperf"] = json.dumps({k: c.to_dict() for k, c in s.cases.items()})
        return
    if s.profile is None or not (s.cases or s.infeasible):
        return
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    run = s.run_results(interrupted=interrupted)
    config.stash[_RUN] = run
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if s.options.save and not interrupted:
        try:
            path = s.save_baseline(run)
            _line(tr, f"batchperf: baseline saved to {path}")
        except BaselineError as exc:
            _line(tr, f"batchperf: ERROR: {exc}", red=True)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif s.options.save:
        _line(tr, "batchperf: interrupted: baseline left untouched", red=True)
    if s.options.report_dir is not None:
        try:
            written = report.write_all(run, s.options.report_dir)
            _line(tr, f"batchperf: reports written to {s.options.report_dir} "
                      f"({', '.join(p.name for p in written)})")
        except Exception as exc:  # noqa: BLE001 - a broken report must not hide the verdicts
            _line(tr, f"batchperf: ERROR: cannot write reports: {type(exc).__name__}: {exc}",
                  red=True)


_RUN = pytest.StashKey[Any]()


def _line(tr, text: str, **kw) -> None:
    if tr is not None:
        tr.write_line(text, **kw)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    run = config.stash.get(_RUN, None)
    if run is None:
        return
    terminalreporter.section("batchperf")
    for line in report.terminal_lines(run):
        terminalreporter.write_line(line)
