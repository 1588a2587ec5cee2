"""pytest hooks: thin, lazy, and dormant until a batchperf test is collected.

Loading this module imports pytest and the options table only; the session, engines,
statistics and reports are imported when a test that uses the ``batchperf`` fixture is
collected. Every hook returns at once otherwise.

Runs: a case's evidence comes from several fresh engine processes (``plan``). When a run
holds more than one per case, this plugin runs the items in passes (every case's first
run, then every case's second ...) and reports each item once, with its final outcome;
under pytest-xdist each item measures all of its runs itself instead.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from .options import DEFAULT_BATCH_SIZES, add_options

if TYPE_CHECKING:
    from .session import BatchperfSession

FIXTURE = "batchperf"
MARKER_LINE = (
    "batchperf(rounds=None, warmup=None, runs=None, tolerance=None, gate_metrics=None, "
    "batch_sizes=None): per-test settings of pytest-batchperf (tolerance is a "
    "{metric: percent} dict, gate_metrics a list of metric names)"
)


class _State:
    """The session, made on first use; an option or profile error, kept for one line."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.session: BatchperfSession | None = None
        self.error: Exception | None = None
        self.progress: Any = None
        self.run: Any = None

    def get(self) -> BatchperfSession:
        if self.session is None:
            from dataclasses import replace

            from .options import Interleave, Options
            from .passes import SUPPORTED
            from .profiles import ProfileError
            from .session import BatchperfSession

            try:
                options = Options.from_config(self.config)
            except (ValueError, ProfileError) as exc:
                raise pytest.UsageError(str(exc)) from None
            if not SUPPORTED:
                options = replace(options, interleave=Interleave.CASE)
            self.session = BatchperfSession(options, self.config.rootpath)
        return self.session

    def prepared(self) -> BatchperfSession:
        from .judge.baseline import BaselineError
        from .models.resolve import ModelError
        from .profiles import ProfileError

        s = self.get()
        try:
            s.prepare()
        except (ProfileError, BaselineError, ModelError) as exc:
            raise pytest.UsageError(str(exc)) from None
        return s


STATE = pytest.StashKey[_State]()


def _state(config: pytest.Config) -> _State:
    return config.stash[STATE]


def _uses_batchperf(item: Any) -> bool:
    return FIXTURE in getattr(item, "fixturenames", ())


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_LINE)
    config.stash[STATE] = _State(config)


def _marker(node: Any) -> dict[str, Any]:
    m = node.get_closest_marker("batchperf")
    return dict(m.kwargs) if m else {}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = metafunc.fixturenames
    if FIXTURE not in names or "batch_size" not in names or _parametrizes(metafunc, "batch_size"):
        return
    sizes = _marker(metafunc.definition).get("batch_sizes") or _batch_sizes(metafunc.config)
    metafunc.parametrize("batch_size", list(sizes), ids=[f"B{b}" for b in sizes])


def _parametrizes(metafunc: pytest.Metafunc, name: str) -> bool:
    """A ``parametrize`` marker of the test already gives ``name`` its values."""
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", ())
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if name in names:
            return True
    return False


def _batch_sizes(config: pytest.Config) -> tuple[int, ...]:
    """The flag's or ini's sizes, else the profile's, else the plugin's defaults. An error
    is kept and raised, in one line, once collection is over."""
    state = _state(config)
    try:
        s = state.get()
        if s.options.batch_sizes:
            return s.options.batch_sizes
        s = state.prepared()
    except pytest.UsageError as exc:
        state.error = exc
        return DEFAULT_BATCH_SIZES
    return (s.profile.batch_sizes if s.profile else ()) or DEFAULT_BATCH_SIZES


def pytest_collection_finish(session: pytest.Session) -> None:
    items = [i for i in session.items if _uses_batchperf(i)]
    if not items:
        return
    state = _state(session.config)
    if state.error is not None:
        raise state.error
    s = state.prepared()
    s.collected(len(items))
    from . import progress

    # In passes each run of a case is reported as it ends: count runs, not cases.
    runs = sum(len(s.plan(_marker(i).get("runs")).slots()) for i in items)
    unit = "runs" if runs > len(items) and s.passes and not _xdist(session.config) else "cases"
    total = runs if unit == "runs" else len(items)
    state.progress = progress.for_pytest(session.config, total, unit)


def _xdist(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput") or config.pluginmanager.hasplugin("dsession")


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    """Run the items in passes when a case takes more than one run."""
    state = _state(session.config)
    if (
        state.session is None
        or not state.session.prepared
        or _xdist(session.config)
        or session.config.option.collectonly
        or not state.session.passes
    ):
        return None
    s = state.session
    plans = {i: s.plan(_marker(i).get("runs")).slots() for i in session.items if _uses_batchperf(i)}
    if all(len(slots) <= 1 for slots in plans.values()):
        return None
    if session.testsfailed and not session.config.option.continue_on_collection_errors:
        raise session.Interrupted(f"{session.testsfailed} error(s) during collection")
    from .passes import run_passes

    run_passes(session, plans, s)
    return True


@pytest.fixture(scope="session")
def batchperf_engine(pytestconfig: pytest.Config) -> Any:
    """The engine of the current run, as suites see it (calibration, feature checks)."""
    from .fixture import EngineView

    return EngineView(_state(pytestconfig).prepared())


@pytest.fixture
def batchperf(request: pytest.FixtureRequest) -> Any:
    from .fixture import Batchperf, Hooks
    from .measure.runner import Rounds

    state = _state(request.config)
    s = state.prepared()
    hooks = Hooks(
        run_case=s.run_case,
        sized_case=s.sized_case,
        reference_spec=s.reference_spec,
        defaults=Rounds(s.options.rounds, s.options.warmup),
        engine=s.current_engine,
    )
    final = s.final_slot(_marker(request.node).get("runs"))
    return Batchperf(request, hooks, state.progress, drives=final)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: unknown where xdist is not installed
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: collect the cases a worker measured."""
    data = getattr(node, "workeroutput", {}).get("batchperf")
    if data:
        from .judge.results import CaseResult

        cases = {cid: CaseResult.from_dict(cid, d) for cid, d in json.loads(data).items()}
        _state(node.config).prepared().add_cases(cases)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = _state(session.config)
    s = state.session
    if s is None or not s.prepared:
        return
    s.close()
    config = session.config
    if hasattr(config, "workerinput"):
        worker_output = config.workeroutput  # type: ignore[attr-defined]  # set by xdist
        worker_output["batchperf"] = json.dumps(s.worker_cases())
        return
    if not s.measured:
        return
    from .judge.baseline import BaselineError

    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    run = state.run = s.run_results(interrupted=interrupted)
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if any(s.policy.fails(c.verdict) for c in run.suite):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # no single case carries it
    if s.options.save and not interrupted:
        try:
            _line(tr, f"batchperf: baseline saved to {s.save_baseline(run)}")
        except BaselineError as exc:
            _line(tr, f"batchperf: ERROR: {exc}", red=True)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif s.options.save:
        _line(tr, "batchperf: interrupted: baseline left untouched", red=True)
    if s.options.report_dir is not None:
        from . import report  # after the save: a broken report must not lose the baseline

        written, errors = report.write_all(run, s.options.report_dir)
        if written:
            _line(
                tr,
                f"batchperf: reports written to {s.options.report_dir} "
                f"({', '.join(p.name for p in written)})",
            )
        for error in errors:  # a broken report must not hide the verdicts
            _line(tr, f"batchperf: ERROR: cannot write {error}", red=True)


def _line(tr: Any, text: str, **kw: Any) -> None:
    if tr is not None:
        tr.write_line(text, **kw)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = _state(config).run
    if run is None:
        return
    from . import report

    terminalreporter.section("batchperf")
    for line in report.terminal_lines(run):
        terminalreporter.write_line(line)
