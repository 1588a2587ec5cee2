"""One pytest session's batchperf state, and the one owner of "run and judge a case".

Plain Python, no pytest: the hooks in plugin.py and the fixture in fixture.py forward to it.
``prepare`` sets the run up (``prepared``: profiles, models, the baseline, all or nothing),
the engines' processes come from an ``EnginePool``, a case's runs gather in a
``CaseRecord`` (``records``); ``run_case`` measures a case's runs as the
plan says (``plan``), each on the engine process of its slot, judges it once its planned
runs are in, adds runs while it stays inconclusive, and says what pytest should do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import run_summary
from .device import Device
from .engine_pool import EnginePool
from .engines.base import Engine, EngineError, EngineUnavailable, OutOfMemory
from .judge import baseline as baselines
from .judge import gate
from .judge.decision import Verdict
from .judge.results import CaseResult, MetricRuns, Mode, RunResults
from .measure import environment, interference
from .measure.runner import Driver, measure_run
from .models.resolve import ModelError
from .options import DEFAULT_SAVE_RUNS, Interleave, Options
from .plan import Plan, Side, Slot
from .prepared import Prepared, prepare
from .profiles import Profile, ProfileError
from .records import Action, CaseOutcome, CaseRecord, CaseSettings
from .workload.spec import CaseSpec


class BatchperfSession:
    def __init__(self, options: Options, rootdir: Path):
        self.options = options
        self.rootdir = rootdir
        self.setup: Prepared | None = None
        self.planned_cases = 1  # set from the collected items: shares the alpha budget
        self.current_slot: Slot | None = None  # set by the pass loop; None: all slots inline
        self.records: dict[str, CaseRecord] = {}
        self.cases: dict[str, CaseResult] = {}
        self.infeasible: dict[str, tuple[str, CaseSpec, str]] = {}
        self.remeasured: set[str] = set()  # regressed on a disturbed run: measured again
        self.disturbed_verdicts: set[str] = set()  # ... and the verdict rests on disturbed runs
        self._error: Exception | None = None
        self._engines: EnginePool | None = None
        self._policy: gate.GatePolicy | None = None

    # -- what the plugin and the pass loop tell it ----------------------------------------

    def collected(self, cases: int) -> None:
        """The batchperf cases this run holds: they share the run's false-alarm budget."""
        self.planned_cases = cases

    def enter_slot(self, slot: Slot | None) -> None:
        """The pass loop runs ``slot`` of every case next (None: each case all its slots)."""
        self.current_slot = slot

    def add_cases(self, cases: Mapping[str, CaseResult]) -> None:
        """Cases an xdist worker measured and judged."""
        self.cases.update(cases)

    @property
    def measured(self) -> bool:
        return bool(self.cases or self.infeasible or self.records)

    def final_slot(self, marker_runs: int | None = None) -> bool:
        """Whether the current slot is a case's last planned one: the run pytest reports."""
        slots = self.plan(marker_runs).slots()
        return self.current_slot is None or self.current_slot == slots[-1]

    # -- set-up ----------------------------------------------------------------------

    @property
    def prepared(self) -> bool:
        return self.setup is not None

    @property
    def profile(self) -> Profile | None:
        """The candidate's profile, once prepared."""
        return self.setup.profile if self.setup else None

    @property
    def baseline(self) -> RunResults | None:
        return self.setup.baseline if self.setup else None

    @property
    def hardware_class(self) -> str:
        return self.setup.hardware_class if self.setup else ""

    @property
    def engines(self) -> EnginePool:
        if self._engines is None:
            s = self._ready()
            self._engines = EnginePool(s.sides, s.specs, self.options.timeout_s)
        return self._engines

    def _ready(self) -> Prepared:
        assert self.setup is not None, "prepare() first"
        return self.setup

    @property
    def ab(self) -> bool:
        return self.options.ab

    @property
    def saving(self) -> bool:
        return self.options.save

    def prepare(self) -> None:
        """Resolve profiles, models and the baseline; all or nothing. Raises ProfileError,
        BaselineError or ModelError (one line), and again on every later call."""
        if self.setup is not None:
            return
        if self._error is not None:
            raise self._error
        try:
            self.setup = prepare(self.options, self.rootdir)
            self._policy = None  # the profile's tolerances and device are known now
        except (ProfileError, baselines.BaselineError, ModelError) as exc:
            self._error = exc
            raise

    @property
    def baseline_path(self) -> Path:
        return self._ready().baseline_path

    def runs_per_case(self, marker_runs: int | None = None) -> int:
        if self.ab:
            return self.options.pairs
        for value in (marker_runs, self.options.runs, self.profile.runs if self.profile else None):
            if value:
                return value
        return DEFAULT_SAVE_RUNS if self.saving else 1

    @property
    def passes(self) -> bool:
        """Runs go pass by pass (every case's first run, then every case's second ...); else
        each case runs all of its runs back to back, each on a fresh engine. Back to back
        keeps an A/B pair seconds apart on a CPU, where a new engine costs a second and the
        machine's slow phases come and go within a pass (docs/results/cpu-gate.md); on a
        GPU a new engine costs a minute."""
        mode = self.options.interleave
        if mode is Interleave.AUTO:
            cpu = self.profile is not None and not self.profile.device.gpu
            mode = Interleave.CASE if self.ab and cpu else Interleave.PASS
        return mode is Interleave.PASS

    def plan(self, marker_runs: int | None = None) -> Plan:
        extend = 0 if self.saving else self.options.extend
        return Plan(self.runs_per_case(marker_runs), self.ab, extend)

    @property
    def policy(self) -> gate.GatePolicy:
        """The run's judging policy, built once the profile and the cases are known."""
        if self._policy is None or self._policy.cases != self.planned_cases:
            self._policy = self._make_policy()
        return self._policy

    def _make_policy(self) -> gate.GatePolicy:
        o = self.options
        return gate.GatePolicy(
            o.tolerances,
            o.alpha,
            strict=o.strict,
            profile_tolerances=self.profile.tolerances if self.profile else {},
            cases=self.planned_cases,
            looks=self.plan().looks,
            paired=self.ab,
            gate_metrics=o.gate_metrics or (self.profile.gate_metrics if self.profile else ()),
            planned=self.runs_per_case(),
            device=self.profile.device if self.profile else Device.CPU,
            pass_order=self.ab and self.passes,
        )

    # -- engines ---------------------------------------------------------------------

    def current_engine(self) -> Engine:
        """The engine the suites' fixtures see (calibration, feature checks): the current
        pass's, else the first planned slot's."""
        slot = self.current_slot or self.plan().slots()[0]
        return self.engines.engine_for(slot, "")

    def close(self) -> None:
        if self._engines is not None:
            self._engines.close()

    # -- cases -----------------------------------------------------------------------

    def reference_spec(self, case_id: str) -> CaseSpec | None:
        """The spec this case must run again, where one exists: the baseline's, else the one
        an earlier run of this session used. Suites that derive a workload from a
        measurement (an offered request rate) reuse it, so that runs compare the same load."""
        base = self.baseline.cases.get(case_id) if self.baseline else None
        if base is not None and base.spec is not None:
            return base.spec
        rec = self.records.get(case_id)
        return rec.spec if rec is not None else None

    def sized_case(self, spec: CaseSpec) -> CaseSpec:
        assert self.profile is not None
        return replace(spec, workload=self.profile.sized_workload(spec.workload, spec.batch_size))

    def run_case(
        self,
        case_id: str,
        suite: str,
        spec: CaseSpec,
        settings: CaseSettings,
        drive: Driver | None = None,
        on_run: Callable[[Slot, int], None] | None = None,
    ) -> CaseOutcome:
        """Measure this case's runs due now, and judge it once its planned runs are in."""
        plan = self.plan(settings.runs)
        rec = self.records.get(case_id)
        if rec is None:
            rec = self.records[case_id] = CaseRecord(case_id, suite, spec, settings)
        planned = plan.slots()
        due = [self.current_slot] if self.current_slot is not None else list(planned)
        due = [s for s in due if s in planned and rec.sides[s.side].infeasible is None]
        for slot in due:
            outcome = self._measure(rec, slot, settings, drive if slot == due[0] else None, on_run)
            if outcome is not None:
                return outcome
        if self.current_slot is not None and self.current_slot != planned[-1]:
            # The test checks what this run measured: its side's metrics.
            return self._capacity(rec) or CaseOutcome(
                rec.result(side=self.current_slot.side), Action.PENDING
            )
        decided = self._capacity(rec)
        if decided is not None:
            return decided
        judged = self._judge(rec)
        step = 0

        def extend() -> CaseOutcome | None:  # the next extension step's run (pair)
            for slot in plan.extension(step):
                outcome = self._measure(rec, slot, settings, None, on_run)
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
        self,
        rec: CaseRecord,
        slot: Slot,
        settings: CaseSettings,
        drive: Driver | None,
        on_run: Callable[[Slot, int], None] | None,
    ) -> CaseOutcome | None:
        """One run into the record; an outcome when the case ends here (error, skip)."""
        if on_run is not None:
            on_run(slot, settings.rounds.rounds)
        try:
            engine = self.engines.engine_for(slot, rec.case_id)
            ready = self._ready()
            m = measure_run(engine, rec.spec, settings.rounds, ready.gpus, drive, ready.roofline)
        except OutOfMemory as exc:
            rec.sides[slot.side].infeasible = str(exc)
            return self._capacity(rec) if not self.ab or slot.side is Side.CANDIDATE else None
        except EngineUnavailable as exc:
            self.cases.pop(rec.case_id, None)
            return CaseOutcome(rec.result(), Action.SKIP, str(exc))
        except Exception as exc:
            text = (
                f"engine error: {exc}"
                if isinstance(exc, EngineError)
                else f"{type(exc).__name__}: {exc}"
            )
            result = rec.result(error=text)
            self.cases[rec.case_id] = replace(result, verdict=Verdict.ERROR)
            side = f" ({slot.side.value} side)" if self.ab else ""
            return CaseOutcome(
                self.cases[rec.case_id], Action.FAIL, f"{rec.case_id}{side}: {text.splitlines()[0]}"
            )
        rec.add(slot, m)
        return None

    def _capacity(self, rec: CaseRecord) -> CaseOutcome | None:
        """A case whose batch did not fit: a capacity regression where the reference fitted
        it, else a skip (the sweep's feasibility limit); None while it is undecided."""
        cand = rec.sides[Side.CANDIDATE].infeasible
        size = rec.spec.batch_size
        if cand is None:
            ref = rec.sides[Side.REFERENCE].infeasible if self.ab else None
            if ref is None:
                return None
            # The candidate has nothing to be compared with: an error, never a pass.
            text = f"the reference side does not fit batch size {size}: {ref.splitlines()[0]}"
            result = replace(rec.result(error=text), verdict=Verdict.ERROR)
            self.cases[rec.case_id] = result
            return CaseOutcome(result, Action.FAIL, f"{rec.case_id}: {text}")
        if self.ab:
            ref_fits = rec.count(Side.REFERENCE) > 0
            if not ref_fits and rec.sides[Side.REFERENCE].infeasible is None:
                return None  # the reference has not run yet
        else:
            base = self.baseline.cases.get(rec.case_id) if self.baseline else None
            ref_fits = base is not None and bool(base.metrics)
        if not ref_fits or self.saving:
            self.infeasible[rec.case_id] = (rec.suite, rec.spec, cand)
            self.cases.pop(rec.case_id, None)
            return CaseOutcome(rec.result(), Action.SKIP, f"batch size {size} does not fit: {cand}")
        where = "the reference" if self.ab else "the baseline"
        comparison = gate.capacity_regression(size, where, cand)
        result = rec.result().with_comparisons((comparison,))
        self.cases[rec.case_id] = result
        return CaseOutcome(
            result,
            Action.FAIL,
            f"{rec.case_id}: capacity regressed (max_batch_size): batch size {size} "
            f"fitted in {where} and no longer fits: {cand.splitlines()[0]}",
        )

    def _judge(self, rec: CaseRecord, keep: tuple[int, ...] | None = None) -> CaseResult:
        """The case judged on all its runs, or on the runs (pairs) ``keep``, at the look of
        all the runs it measured."""
        case = rec.result(keep=keep)
        measured = rec.count(Side.CANDIDATE)
        policy = self.policy.merged(rec.settings)
        if self.ab:
            pairs = [
                (r.sides[Side.REFERENCE].metrics, r.sides[Side.CANDIDATE].metrics)
                for r in self.records.values()
            ]
            judged = gate.judge_case(
                case, case.reference, policy, gate.paired_priors(pairs), True, measured
            )
        else:
            base = self.baseline.cases.get(rec.case_id) if self.baseline else None
            reference = base.metrics if base else None
            priors = self._ready().priors
            judged = gate.judge_case(case, reference, policy, priors, measured=measured)
        self.cases[rec.case_id] = judged
        return judged

    def _finish(self, judged: CaseResult, settings: CaseSettings) -> CaseOutcome:
        policy = self.policy.merged(settings)
        if policy.fails(judged.verdict) and not self.saving:
            return CaseOutcome(judged, Action.FAIL, gate.failure_message(judged, policy))
        if judged.verdict is Verdict.INCONCLUSIVE:
            return CaseOutcome(
                judged, Action.WARN, gate.failure_message(judged, replace(policy, strict=True))
            )
        return CaseOutcome(judged, Action.PASS)

    # -- the run ---------------------------------------------------------------------

    def _max_batch_sizes(self) -> None:
        """Give the largest case that fit in each sweep that hit a limit a
        ``max_batch_size`` metric (compared exactly with the reference), and judge it."""
        for cid, size in run_summary.largest_fitting(self.infeasible, self.cases).items():
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

    def _environment(self, side: Side) -> dict:
        ready = self._ready()
        profile = ready.sides[side]
        env = environment.capture(profile.device, ready.gpus, self.engines.info.get(side))
        env["profile"] = profile.describe()
        return env

    def notices(self) -> tuple[str, ...]:
        return run_summary.notices(
            self._ready(),
            self.policy,
            self.saving,
            self.cases,
            self.remeasured,
            self.disturbed_verdicts,
        )

    def run_results(self, interrupted: bool = False) -> RunResults:
        assert self.profile is not None
        self._max_batch_sizes()
        base_cases = self.baseline.cases if self.baseline else {}
        missing = run_summary.missing(base_cases, self.cases, self.infeasible)
        cases = dict(self.cases)
        for cid, rec in self.records.items():  # interrupted mid-case: what it measured
            if cid not in cases and cid not in self.infeasible and rec.count(Side.CANDIDATE):
                cases[cid] = rec.result()
        if self.ab:
            reference_env: Mapping[str, Any] | None = self._environment(Side.REFERENCE)
        else:
            reference_env = dict(self.baseline.environment) if self.baseline else None
        return RunResults(
            profile=self.profile.name,
            hardware_class=self.hardware_class,
            environment=self._environment(Side.CANDIDATE),
            cases=cases,
            created=self._ready().started,
            interrupted=interrupted,
            missing=missing,
            mode=Mode.AB if self.ab else Mode.BASELINE,
            baseline_path=None if self.ab else str(self.baseline_path),
            baseline_environment=reference_env,
            gate=self.policy.to_dict(),
            notices=self.notices(),
            suite=gate.suite_effects(
                cases,
                self.policy,
                None if self.ab else self.baseline.cases if self.baseline else {},
            )
            if self.ab or (self.baseline and not self.saving)
            else (),
        )

    def save_baseline(self, run: RunResults) -> Path:
        baselines.save(self.baseline_path, run, self.options.baseline_jobs)
        return self.baseline_path
