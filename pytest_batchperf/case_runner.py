"""Running and judging one case: its runs as the plan says, each on the engine process of
its slot, judged once its planned runs are in, extended while it stays inconclusive, and
measured again where it regressed on a disturbed run. Plain Python, no pytest.

What it needs from the run (the slot, the plan, the policy, the engines, the baseline) comes
through ``RunContext``; what it measured and judged stays here (``records``, ``cases``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Protocol

from .engine_pool import EnginePool
from .engines.base import EngineError, EngineUnavailable, OutOfMemory
from .judge import gate
from .judge.capacity import Fit, capacity_verdict
from .judge.decision import Verdict
from .judge.results import CaseResult, MetricRuns
from .measure import interference
from .measure.runner import Driver, measure_run
from .plan import Plan, Side, Slot
from .prepared import Prepared
from .records import Action, CaseOutcome, CaseRecord, CaseSettings
from .run_summary import Infeasible, largest_fitting
from .workload.spec import CaseSpec

OnRun = Callable[[Slot, int], None]


class RunContext(Protocol):
    """The run a case is part of (the session)."""

    current_slot: Slot | None  # the pass loop's; None: each case runs all its slots

    @property
    def ab(self) -> bool: ...
    @property
    def saving(self) -> bool: ...
    @property
    def policy(self) -> gate.GatePolicy: ...
    @property
    def engines(self) -> EnginePool: ...
    def plan(self, marker_runs: int | None = None) -> Plan: ...
    def ready(self) -> Prepared: ...


class CaseRunner:
    def __init__(self, run: RunContext):
        self.run = run
        self.records: dict[str, CaseRecord] = {}
        self.cases: dict[str, CaseResult] = {}  # judged (or errored) cases
        self.infeasible: dict[str, tuple[str, CaseSpec, str]] = {}
        self.remeasured: set[str] = set()  # regressed on a disturbed run: measured again
        self.disturbed_verdicts: set[str] = set()  # ... and the verdict rests on disturbed runs

    def run_case(
        self,
        case_id: str,
        suite: str,
        spec: CaseSpec,
        settings: CaseSettings,
        drive: Driver | None = None,
        on_run: OnRun | None = None,
    ) -> CaseOutcome:
        """Measure this case's runs due now, and judge it once its planned runs are in."""
        plan, slot_now = self.run.plan(settings.runs), self.run.current_slot
        rec = self.records.get(case_id)
        if rec is None:
            rec = self.records[case_id] = CaseRecord(case_id, suite, spec, settings)
        if slot_now is None:  # back to back: cases take turns at opening with the candidate
            plan = plan.counterbalanced(list(self.records).index(case_id))
        planned = plan.slots()
        due = [slot_now] if slot_now is not None else list(planned)
        due = [s for s in due if s in planned and rec.sides[s.side].infeasible is None]
        for slot in due:
            outcome = self._measure(rec, slot, drive if slot == due[0] else None, on_run)
            if outcome is not None:
                return outcome
        if slot_now is not None and slot_now != planned[-1]:
            # The test checks what this run measured: its side's metrics.
            return self._capacity(rec) or CaseOutcome(
                rec.result(side=slot_now.side), Action.PENDING
            )
        decided = self._capacity(rec)
        if decided is not None:
            return decided
        judged = self._judge(rec)
        step = 0

        def extend() -> CaseOutcome | None:  # the next extension step's run (pair)
            for slot in plan.extension(step):
                outcome = self._measure(rec, slot, None, on_run)
                if outcome is not None:
                    return outcome
            return None

        while judged.verdict is Verdict.INCONCLUSIVE and step < plan.extend:
            step += 1
            if outcome := extend():
                return outcome
            judged = self._judge(rec)
        remeasured = 0
        # A regression measured while other work ran counts only once measured quietly:
        # until then the verdict rests on every run (``keep`` None), disturbed ones too.
        while judged.verdict is Verdict.REGRESSED and step < plan.extend and any(rec.disturbed()):
            step += 1
            remeasured += 1
            quiet = interference.wait_for_quiet()
            if outcome := extend():
                return outcome
            keep = rec.quiet_runs()
            judged = self._judge(rec, keep)
            if keep is not None or not quiet:
                break  # judged on quiet runs alone, or the machine stays busy
        if remeasured:
            note, resting = rec.remeasured_note(remeasured)
            self.remeasured.add(case_id)
            if resting:
                self.disturbed_verdicts.add(case_id)
            judged = self.cases[case_id] = replace(judged, warnings=(*judged.warnings, note))
        return self._finish(judged, settings)

    def _measure(
        self, rec: CaseRecord, slot: Slot, drive: Driver | None, on_run: OnRun | None
    ) -> CaseOutcome | None:
        """One run into the record; an outcome when the case ends here (error, skip)."""
        if on_run is not None:
            on_run(slot, rec.settings.rounds.rounds)
        try:
            engine = self.run.engines.engine_for(slot, rec.case_id)
            ready = self.run.ready()
            m = measure_run(
                engine, rec.spec, rec.settings.rounds, ready.gpus, drive, ready.roofline
            )
        except OutOfMemory as exc:
            rec.sides[slot.side].infeasible = str(exc)
            if self.run.ab and slot.side is not Side.CANDIDATE:
                return None
            return self._capacity(rec)
        except EngineUnavailable as exc:
            self.cases.pop(rec.case_id, None)
            return CaseOutcome(rec.result(), Action.SKIP, str(exc))
        except Exception as exc:
            text = (
                f"engine error: {exc}"
                if isinstance(exc, EngineError)
                else f"{type(exc).__name__}: {exc}"
            )
            result = self.cases[rec.case_id] = replace(
                rec.result(error=text), verdict=Verdict.ERROR
            )
            side = f" ({slot.side.value} side)" if self.run.ab else ""
            return CaseOutcome(result, Action.FAIL, f"{rec.case_id}{side}: {text.splitlines()[0]}")
        rec.add(slot, m)
        return None

    def _capacity(self, rec: CaseRecord) -> CaseOutcome | None:
        """A case whose batch did not fit, as ``judge.capacity`` decides; None while it fits
        or is undecided."""
        ab = self.run.ab
        if ab:
            reference_fits = rec.count(Side.REFERENCE) > 0
        else:
            base = self.run.ready().baseline
            case = base.cases.get(rec.case_id) if base else None
            reference_fits = case is not None and bool(case.metrics)
        decided = capacity_verdict(
            rec.spec.batch_size,
            rec.sides[Side.CANDIDATE].infeasible,
            rec.sides[Side.REFERENCE].infeasible if ab else None,
            reference_fits,
            ab,
            self.run.saving,
        )
        if decided is None:
            return None
        if decided.fit is Fit.SKIP:
            cand = rec.sides[Side.CANDIDATE].infeasible or ""
            self.infeasible[rec.case_id] = (rec.suite, rec.spec, cand)
            self.cases.pop(rec.case_id, None)
            return CaseOutcome(rec.result(), Action.SKIP, decided.message)
        if decided.fit is Fit.ERROR:
            result = replace(rec.result(error=decided.message), verdict=Verdict.ERROR)
        else:
            assert decided.comparison is not None
            result = rec.result().with_comparisons((decided.comparison,))
        self.cases[rec.case_id] = result
        return CaseOutcome(result, Action.FAIL, f"{rec.case_id}: {decided.message}")

    def _judge(self, rec: CaseRecord, keep: tuple[int, ...] | None = None) -> CaseResult:
        """The case judged on all its runs, or on the runs (pairs) ``keep``, at the look of
        all the runs it measured."""
        case = rec.result(keep=keep)
        measured = rec.count(Side.CANDIDATE)
        policy = self.run.policy.merged(rec.settings)
        if self.run.ab:
            pairs = [
                (r.sides[Side.REFERENCE].metrics, r.sides[Side.CANDIDATE].metrics)
                for r in self.records.values()
            ]
            priors = gate.paired_priors(pairs)
            judged = gate.judge_case(case, case.reference, policy, priors, True, measured)
        else:
            ready = self.run.ready()
            base = ready.baseline.cases.get(rec.case_id) if ready.baseline else None
            reference = base.metrics if base else None
            judged = gate.judge_case(case, reference, policy, ready.priors, measured=measured)
        self.cases[rec.case_id] = judged
        return judged

    def _finish(self, judged: CaseResult, settings: CaseSettings) -> CaseOutcome:
        policy = self.run.policy.merged(settings)
        if policy.fails(judged.verdict) and not self.run.saving:
            return CaseOutcome(judged, Action.FAIL, gate.failure_message(judged, policy))
        if judged.verdict is Verdict.INCONCLUSIVE:
            return CaseOutcome(
                judged, Action.WARN, gate.failure_message(judged, replace(policy, strict=True))
            )
        return CaseOutcome(judged, Action.PASS)

    def finished_cases(self) -> tuple[dict[str, CaseResult], Infeasible]:
        """Every case the run measured, and those whose batch did not fit. The largest batch
        that fitted in a sweep that hit a limit gets a ``max_batch_size`` metric (compared
        exactly with the reference) and is judged again; a case interrupted mid-way gives
        what it measured."""
        for cid, size in largest_fitting(self.infeasible, self.cases).items():
            rec = self.records.get(cid)
            if rec is None:
                continue
            for side in rec.sides.values():
                if side.runs:
                    side.metrics["max_batch_size"] = MetricRuns.build(
                        "max_batch_size", [(float(size),)] * len(side.runs)
                    )
            if self.cases[cid].error is None:
                self._judge(rec)
        cases = dict(self.cases)
        for cid, rec in self.records.items():
            if cid not in cases and cid not in self.infeasible and rec.count(Side.CANDIDATE):
                cases[cid] = rec.result()
        return cases, self.infeasible

    def add_cases(self, cases: Mapping[str, CaseResult]) -> None:
        """Cases an xdist worker measured and judged."""
        self.cases.update(cases)

    @property
    def measured(self) -> bool:
        return bool(self.cases or self.infeasible or self.records)
