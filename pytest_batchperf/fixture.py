"""The ``batchperf`` fixture: what a test calls to run one case.

It reads the test's marker, builds the typed case, hands it to the session's ``run_case``
(a callback: the fixture never sees the session), and turns the outcome into pytest's:
a pass, a warning (inconclusive), a failure with one readable line per metric, or a skip.
It also hands the case's medians to pytest-benchmark's ``extra_info`` and JUnit properties.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .judge.catalog import parse_gate_metrics, parse_tolerances
from .judge.results import CaseResult
from .measure.runner import Driver, Rounds
from .records import Action, CaseOutcome, CaseSettings
from .workload.spec import SLO, CaseSpec, WorkloadSpec
from .workload.strategies import Strategy

MARKER = "batchperf"
MARKER_HELP = (
    "batchperf(rounds=None, warmup=None, runs=None, tolerance=None, batch_sizes=None): "
    "per-test settings of pytest-batchperf (tolerance is a {metric: percent} dict)"
)


class InconclusiveWarning(UserWarning):
    """A case beyond its tolerance whose change the noise could explain."""


def marker_kwargs(node: Any) -> dict[str, Any]:
    m = node.get_closest_marker(MARKER)
    return dict(m.kwargs) if m else {}


@dataclass(frozen=True)
class Hooks:
    """What the fixture may ask of the session."""

    run_case: Callable[..., CaseOutcome]
    sized_case: Callable[[CaseSpec], CaseSpec]
    reference_spec: Callable[[str], CaseSpec | None]
    defaults: Rounds
    engine: Callable[[], Any]


def case_settings(marker: Mapping[str, Any], defaults: Rounds) -> CaseSettings:
    """The marker's rounds, warm-up, runs, tolerances and gated metrics over the session's
    defaults."""
    try:  # a misspelt metric must not silently keep its default tolerance
        tolerances = parse_tolerances(
            f"{k}={v}" for k, v in (marker.get("tolerance") or {}).items()
        )
    except ValueError as exc:
        raise pytest.UsageError(f"@pytest.mark.batchperf(tolerance=...): {exc}") from None
    try:
        gate_metrics = parse_gate_metrics(marker.get("gate_metrics") or ())
    except ValueError as exc:
        raise pytest.UsageError(f"@pytest.mark.batchperf(gate_metrics=...): {exc}") from None
    runs = marker.get("runs")
    if runs is not None and (not isinstance(runs, int) or runs < 1):
        raise pytest.UsageError(
            f"@pytest.mark.batchperf(runs=...) must be an integer >= 1, got {runs!r}"
        )
    return CaseSettings(
        Rounds(
            int(marker.get("rounds") or defaults.rounds),
            int(defaults.warmup if marker.get("warmup") is None else marker["warmup"]),
        ),
        runs,
        tolerances,
        gate_metrics,
    )


class Batchperf:
    """Runs one case and judges it against its reference (the baseline, or the A/B
    reference side)."""

    def __init__(self, request: Any, hooks: Hooks, progress: Any = None, drives: bool = True):
        self._request = request
        self._hooks = hooks
        self._benchmark: Any = None
        self._progress = progress
        self._drives = drives  # this call's first run goes through pytest-benchmark
        self.last: CaseResult | None = None

    @property
    def case_id(self) -> str:
        return case_id(self._request.node)

    @property
    def engine(self) -> Any:
        """The engine of the current run (calibration, feature checks)."""
        return self._hooks.engine()

    def reference_params(self) -> CaseSpec | None:
        """The case as the reference ran it (the baseline's, or an earlier run's), or None:
        a suite that derives its workload from a measurement reuses it, so that both sides
        run the same workload."""
        return self._hooks.reference_spec(self.case_id)

    def _drive(self) -> Driver | None:
        """pytest-benchmark's pedantic drives the rounds of this call's first run, so its
        JSON and compare tools see every case. Its fixture is asked for only when the rounds
        start: a case that fails before never leaves it unused."""
        request = self._request
        if not self._drives or not request.config.pluginmanager.hasplugin("benchmark"):
            return None

        def drive(fn: Callable[[], None], rounds: int) -> None:
            bench = self._benchmark = request.getfixturevalue("benchmark")
            if bench.enabled:
                bench.pedantic(fn, rounds=rounds, warmup_rounds=0, iterations=1)
            else:  # disabled (--benchmark-disable, xdist): pedantic calls its target once

                def all_rounds() -> None:
                    for _ in range(rounds):
                        fn()

                bench.pedantic(all_rounds)

        return drive

    def run(
        self,
        workload: WorkloadSpec,
        strategy: Strategy | str,
        batch_size: int,
        slo: SLO | None = None,
    ) -> CaseResult:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise pytest.UsageError(f"batch size must be a positive integer, got {batch_size!r}")
        node = self._request.node
        settings = case_settings(marker_kwargs(node), self._hooks.defaults)
        spec = self._hooks.sized_case(
            CaseSpec(workload, Strategy.parse(strategy), batch_size, slo or SLO())
        )
        progress = self._progress
        drive = self._drive()
        if progress is not None:
            drive = progress.rounds(drive)

        def on_run(slot: Any, rounds: int) -> None:
            if progress is not None:
                progress.start(self.case_id, batch_size, spec.strategy.value, rounds, slot)

        outcome = self._hooks.run_case(self.case_id, suite_of(node), spec, settings, drive, on_run)
        if progress is not None:
            progress.finish()
        self.last = outcome.result
        self._publish(outcome.result)
        if outcome.action is Action.SKIP:
            pytest.skip(outcome.message)
        if outcome.action is Action.FAIL:
            pytest.fail(outcome.message, pytrace=False)
        if outcome.action is Action.WARN:
            warnings.warn(InconclusiveWarning(outcome.message), stacklevel=2)
        return outcome.result

    def _publish(self, case: CaseResult) -> None:
        """Medians into pytest-benchmark's extra_info and JUnit properties."""
        medians = {name: m.median for name, m in case.metrics.items()}
        if self._benchmark is not None:
            self._benchmark.extra_info.update(
                {"batchperf_verdict": case.verdict.value, **case.params, **medians}
            )
        props = self._request.node.user_properties
        props.append(("batchperf.verdict", case.verdict.value))
        for name, value in sorted(medians.items()):
            props.append((f"batchperf.{name}", f"{value:.6g}"))


def suite_of(node: Any) -> str:
    return f"{node.path.stem}::{getattr(node, 'originalname', node.name)}"


SHIPPED_SUITES = Path(__file__).parent / "suites"


@functools.cache
def _shipped() -> Path:
    return SHIPPED_SUITES.resolve()


def case_id(node: Any) -> str:
    """The test's node id; a shipped suite's case is named as in a clone
    (``suites/FILE::NAME``), so one baseline serves an installed package and a clone."""
    path = Path(str(node.path)).resolve()
    if not path.is_relative_to(_shipped()):
        return str(node.nodeid)
    name = str(node.nodeid).split("::", 1)[1]
    return f"suites/{path.relative_to(_shipped()).as_posix()}::{name}"


class EngineView:
    """The engine of the current run, as suites see it in their fixtures (calibration of
    an offered load, feature checks): every call goes to the session's live engine, so a
    fresh engine process per run stays invisible to them."""

    def __init__(self, session: Any):
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session.current_engine(), name)

    def sized(self, workload: WorkloadSpec, batch_size: int) -> WorkloadSpec:
        """``workload`` as the profile runs it at ``batch_size`` (its min_waves)."""
        return self._session.profile.sized_workload(workload, batch_size)
