"""One pytest session's batchperf state, and the one owner of "run and judge a case".

Plain Python, no pytest: the hooks in plugin.py and the fixture in fixture.py forward to it.
``prepare`` resolves the profile (and the A/B reference), checks knobs, interpreters and
models, and reads the baseline, all or nothing; ``run_case`` measures a case's runs as the
plan says (``plan``), each on the engine process of its slot, judges it once its planned
runs are in, adds runs while it stays inconclusive, and says what pytest should do.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from . import engines
from .device import Device
from .engines.base import Engine, EngineError, EngineSpec, EngineUnavailable, OutOfMemory
from .judge import baseline as baselines
from .judge import gate, stats
from .judge.decision import Verdict
from .judge.results import CaseResult, MetricRuns, Mode, RunInfo, RunResults
from .measure import environment, interference
from .measure.roofline import DTYPE_BYTES, Roofline
from .measure.runner import Driver, Rounds, RunMeasurement, measure_run
from .models.resolve import ModelError
from .options import DEFAULT_SAVE_RUNS, Interleave, Options
from .plan import Plan, Side, Slot
from .profiles import Profile, ProfileError, resolve
from .workload.spec import CaseSpec


class Action(StrEnum):
    PENDING = "pending"  # more runs of this case come in later passes
    PASS = "pass"
    WARN = "warn"  # inconclusive: shown, fails only under --batchperf-strict
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class CaseOutcome:
    result: CaseResult
    action: Action
    message: str = ""


@dataclass(frozen=True)
class CaseSettings:
    rounds: Rounds = field(default_factory=Rounds)
    runs: int | None = None  # the marker's
    tolerances: Mapping[str, float] = field(default_factory=dict)
    gate_metrics: tuple[str, ...] = ()  # the marker's; empty: the session's


@dataclass
class _SideRuns:
    metrics: dict[str, MetricRuns] = field(default_factory=dict)
    runs: list[RunInfo] = field(default_factory=list)
    infeasible: str | None = None


@dataclass
class CaseRecord:
    case_id: str
    suite: str
    spec: CaseSpec
    settings: CaseSettings
    started: float = field(default_factory=time.monotonic)
    sides: dict[Side, _SideRuns] = field(default_factory=lambda: {s: _SideRuns() for s in Side})
    warnings: list[str] = field(default_factory=list)

    def add(self, slot: Slot, m: RunMeasurement) -> None:
        side = self.sides[slot.side]
        n = len(side.runs)
        for name, values in m.metrics.items():
            runs = side.metrics.get(name) or MetricRuns.build(name, [()] * n)
            side.metrics[name] = runs.with_run(values)
        for name, runs in side.metrics.items():  # a metric this run lacked: an empty run
            if name not in m.metrics:
                side.metrics[name] = runs.with_run(())
        disturbance = m.interference.to_dict() if m.interference else {}
        side.runs.append(RunInfo(slot.index, slot.side, slot.extension, disturbance))
        prefix = f"{slot.side.value} " if slot.side is Side.REFERENCE else ""
        self.warnings.extend(
            f"{prefix}run {len(side.runs)}: {w}"
            for w in m.warnings
            if f"{prefix}run {len(side.runs)}: {w}" not in self.warnings
        )

    def count(self, side: Side) -> int:
        return len(self.sides[side].runs)

    def disturbed(self) -> tuple[bool, ...]:
        """Each candidate run (A/B: each pair) that other work on the machine disturbed."""
        ref = [_disturbed(r.interference) for r in self.sides[Side.REFERENCE].runs]
        return tuple(
            _disturbed(r.interference) or (i < len(ref) and ref[i])
            for i, r in enumerate(self.sides[Side.CANDIDATE].runs)
        )

    def quiet_runs(self) -> tuple[int, ...] | None:
        """The undisturbed runs (pairs), where some but not all were disturbed; else None."""
        flags = self.disturbed()
        quiet = tuple(i for i, d in enumerate(flags) if not d)
        return quiet if 0 < len(quiet) < len(flags) else None

    def result(
        self,
        error: str | None = None,
        side: Side = Side.CANDIDATE,
        keep: tuple[int, ...] | None = None,
    ) -> CaseResult:
        """The case so far; ``metrics`` are ``side``'s (the candidate's, once judged);
        ``keep``: only these runs (pairs) of both sides, as judged (the others left out)."""
        ref, cand = self.sides[Side.REFERENCE], self.sides[Side.CANDIDATE]

        def kept(m: MetricRuns) -> MetricRuns:
            return m if keep is None else replace(m, runs=tuple(m.runs[i] for i in keep))

        def infos(runs: list[RunInfo]) -> list[RunInfo]:
            return runs if keep is None else [runs[i] for i in keep if i < len(runs)]

        metrics = {
            n: kept(m)
            for n, m in self.sides[side].metrics.items()
            if any(math.isfinite(x) for x in m.rounds)
        }
        return CaseResult(
            case_id=self.case_id,
            suite=self.suite,
            spec=self.spec,
            metrics=metrics,
            reference={n: kept(m) for n, m in ref.metrics.items()},
            error=error,
            warnings=tuple(self.warnings),
            duration_s=time.monotonic() - self.started,
            runs=tuple(infos(ref.runs) + infos(cand.runs)),
        )


def _check_python(profile: Profile) -> None:
    """A ``python`` knob must name an interpreter that can run the engine."""
    if not profile.python:
        return
    python = shutil.which(profile.python) or profile.python
    where = f"profile {profile.name!r}: python {profile.python}"
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise ProfileError(f"{where} does not exist or is not executable")
    builtin = engines.BUILTIN.get(profile.engine)
    package, extra = (builtin.package, builtin.extra) if builtin else ("", "")
    probe = (
        "import sys, importlib.util as u; v = sys.version_info; "
        f"sys.exit(3 if v < (3, 11) else 4 if {package!r} and not u.find_spec({package!r}) "
        "else 0)"
    )
    try:
        code = subprocess.run([python, "-c", probe], capture_output=True, timeout=60).returncode
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProfileError(f"{where} cannot be run: {exc}") from None
    if code == 3:
        raise ProfileError(f"{where} is older than Python 3.11, which the engine process needs")
    if code == 4:
        raise ProfileError(
            f"{where} cannot import {package!r}: install the engine into that "
            f"environment (pip install 'pytest-batchperf[{extra}]' or {package})"
        )
    if code != 0:
        raise ProfileError(f"{where} failed to start (exit code {code})")


def _roofline(profile: Profile, spec: EngineSpec, gpus: tuple[int, ...]) -> Roofline | None:
    """The decode roofline where the model's shape and the GPU's bandwidth are known."""
    from .measure import nvml

    if not gpus or spec.model.shape is None:
        return None
    bandwidth = nvml.memory_bandwidth_gbs(gpus[0])
    if not bandwidth:
        return None
    knobs = spec.knobs
    dtype = getattr(knobs, "dtype", None) or "bfloat16"
    weight = DTYPE_BYTES.get(str(dtype), 2)
    kv = DTYPE_BYTES.get(str(getattr(knobs, "kv_cache_dtype", None) or dtype), weight)
    return Roofline(spec.model.shape, bandwidth * len(gpus), weight, kv)


class BatchperfSession:
    def __init__(self, options: Options, rootdir: Path):
        self.options = options
        self.rootdir = rootdir
        self.profile: Profile | None = None
        self.sides: dict[Side, Profile] = {}
        self.specs: dict[Side, EngineSpec] = {}
        self.hardware_class = ""
        self.baseline: RunResults | None = None
        self.other_classes: tuple[str, ...] = ()  # no baseline here; these classes have one
        self.priors: dict[str, Any] = {}
        self.gpus: tuple[int, ...] = ()
        self.roofline: Roofline | None = None
        self.started = ""
        self.planned_cases = 1  # set from the collected items: shares the alpha budget
        self.current_slot: Slot | None = None  # set by the pass loop; None: all slots inline
        self.records: dict[str, CaseRecord] = {}
        self.cases: dict[str, CaseResult] = {}
        self.infeasible: dict[str, tuple[str, CaseSpec, str]] = {}
        self.remeasured: set[str] = set()  # regressed on a disturbed run: measured again
        self.disturbed_verdicts: set[str] = set()  # ... and the verdict rests on disturbed runs
        self._error: Exception | None = None
        self._engine: Engine | None = None
        self._engine_key: tuple | None = None
        self._failed_starts: dict[tuple, EngineError] = {}
        self.engine_info: dict[Side, dict] = {}

    # -- set-up ----------------------------------------------------------------------

    @property
    def prepared(self) -> bool:
        return self.profile is not None

    @property
    def ab(self) -> bool:
        return self.options.ab

    @property
    def saving(self) -> bool:
        return self.options.save

    def prepare(self) -> None:
        """Resolve profiles, models and the baseline; all or nothing. Raises ProfileError,
        BaselineError or ModelError (one line), and again on every later call."""
        if self.profile is not None:
            return
        if self._error is not None:
            raise self._error
        try:
            self._prepare()
        except (ProfileError, baselines.BaselineError, ModelError) as exc:
            self._error = exc
            raise

    def _prepare(self) -> None:
        o = self.options
        pyproject = self.rootdir / "pyproject.toml"
        candidate = resolve(o.profile, pyproject, o.profiles_file, o.overrides)
        sides = {Side.CANDIDATE: candidate}
        if o.reference_profile:
            sides[Side.REFERENCE] = resolve(o.reference_profile, pyproject, o.profiles_file)
        if o.reference:
            base = sides.get(Side.REFERENCE, candidate)
            sides[Side.REFERENCE] = base.with_overrides(o.reference, "--batchperf-reference")
        from .measure import nvml

        # No GPU for a GPU profile: its engine skips at start, and writing its synthetic
        # model (gigabytes, minutes) first would be wasted.
        gpu_here = nvml.available()
        specs = {}
        for side, profile in sides.items():
            _check_python(profile)
            specs[side] = profile.engine_spec(resolve=gpu_here or not profile.device.gpu)
        gpus = nvml.engine_gpus(candidate.gpus()) if candidate.device.gpu else ()
        hardware_class = environment.hardware_class(candidate.device, gpus)
        path = baselines.baseline_path(o.baseline_dir, hardware_class, candidate.name)
        baseline = None if o.ab else baselines.load(path)
        # Another class's baseline (another CPU model, ISA level or core count) is never
        # compared with this machine: under CI the run fails, locally its cases are new
        # and a notice names the classes that have one.
        have = (
            []
            if o.ab or baseline is not None
            else baselines.classes_with(o.baseline_dir, candidate.name)
        )
        if baseline is None and o.require_baseline and not (o.save or o.ab):
            raise baselines.BaselineError(
                f"no baseline of profile {candidate.name!r} for hardware class "
                f"{hardware_class!r} in {o.baseline_dir} (required under CI or "
                f"--batchperf-require-baseline); baselines exist for: "
                f"{', '.join(have) or 'no class'}. Save one on this machine class with "
                "--batchperf-save"
            )
        self.sides, self.specs, self.gpus = sides, specs, gpus
        self.hardware_class, self.baseline = hardware_class, baseline
        self.other_classes = () if o.save else tuple(have)
        self.priors = gate.priors(c.metrics for c in baseline.cases.values()) if baseline else {}
        self.roofline = _roofline(candidate, specs[Side.CANDIDATE], gpus)
        self.started = datetime.now(UTC).isoformat(timespec="seconds")
        self.profile = candidate

    @property
    def baseline_path(self) -> Path:
        assert self.profile is not None
        return baselines.baseline_path(
            self.options.baseline_dir, self.hardware_class, self.profile.name
        )

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

    def _engine_for(self, slot: Slot, case_id: str) -> Engine:
        """The engine process of ``slot``: the live one, or a fresh one (the previous one
        closed first, so two never hold a GPU at once). A slot whose start failed is not
        retried: its later cases fail at once with the same message."""
        key: tuple = (slot.side, slot.index) + ((case_id,) if slot.extension else ())
        if self._engine is not None and self._engine_key == key:
            return self._engine
        if key in self._failed_starts:
            raise self._failed_starts[key]
        self.close()
        profile = self.sides[slot.side]
        try:
            engine = engines.start(
                self.specs[slot.side],
                self.options.timeout_s or profile.timeout_s,
                profile.isolate,
                profile.python,
            )
        except EngineUnavailable:
            raise
        except EngineError as exc:
            failed = EngineError(f"engine of profile {profile.name!r} failed to start: {exc}")
            self._failed_starts[key] = failed
            raise failed from None
        self._engine, self._engine_key = engine, key
        if slot.side not in self.engine_info:
            info = engine.describe()
            process = getattr(engine, "process", None)
            self.engine_info[slot.side] = {**info, **({"process": process} if process else {})}
        return engine

    def current_engine(self) -> Engine:
        """The engine the suites' fixtures see (calibration, feature checks): the current
        pass's, else the first planned slot's."""
        slot = self.current_slot or self.plan().slots()[0]
        return self._engine_for(slot, "")

    def close(self) -> None:
        engine, self._engine, self._engine_key = self._engine, None, None
        if engine is not None:
            engine.close()

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

    def sized(self, spec: CaseSpec) -> CaseSpec:
        assert self.profile is not None
        return replace(spec, workload=self.profile.sized(spec.workload, spec.batch_size))

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
        while judged.verdict is Verdict.INCONCLUSIVE and step < plan.extend:
            step += 1
            for slot in plan.extension(step):
                outcome = self._measure(rec, slot, settings, None, on_run)
                if outcome is not None:
                    return outcome
            judged = self._judge(rec)
        remeasured = 0
        # A regression measured while other work ran counts only once measured quietly:
        # until then the verdict rests on every run (``keep`` None), disturbed ones too.
        while judged.verdict is Verdict.REGRESSED and step < plan.extend and any(rec.disturbed()):
            step += 1
            remeasured += 1
            quiet = interference.wait_for_quiet()
            for slot in plan.extension(step):
                outcome = self._measure(rec, slot, settings, None, on_run)
                if outcome is not None:
                    return outcome
            keep = rec.quiet_runs()
            judged = self._judge(rec, keep)
            if keep is not None or not quiet:
                break  # judged on quiet runs alone, or the machine stays busy
        if remeasured:
            judged = self._say_disturbed(rec, judged, remeasured)
        return self._finish(judged, settings)

    def _say_disturbed(self, rec: CaseRecord, judged: CaseResult, remeasured: int) -> CaseResult:
        self.remeasured.add(rec.case_id)
        keep = rec.quiet_runs()
        if keep is not None:
            note = (
                f"other work disturbed a run that regressed: measured {remeasured} more "
                f"run(s), judged on the {len(keep)} quiet one(s)"
            )
        else:
            note = (
                f"other work disturbed a run that regressed: measured {remeasured} more "
                "run(s), none quiet: the verdict rests on disturbed runs"
            )
            self.disturbed_verdicts.add(rec.case_id)
        judged = replace(judged, warnings=(*judged.warnings, note))
        self.cases[rec.case_id] = judged
        return judged

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
            engine = self._engine_for(slot, rec.case_id)
            m = measure_run(engine, rec.spec, settings.rounds, self.gpus, drive, self.roofline)
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
            judged = gate.judge_case(case, reference, policy, self.priors, measured=measured)
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
        limits: dict[tuple, int] = {}
        for suite, spec, _ in self.infeasible.values():
            key = (suite, *spec.sweep_key())
            limits[key] = min(limits.get(key, spec.batch_size), spec.batch_size)
        largest: dict[tuple, tuple[int, CaseResult]] = {}
        for case in self.cases.values():
            if case.spec is None or not case.metrics:
                continue
            key, size = (case.suite, *case.spec.sweep_key()), case.spec.batch_size
            if (
                key in limits
                and size < limits[key]
                and (key not in largest or size > largest[key][0])
            ):
                largest[key] = (size, case)
        for size, case in largest.values():
            rec = self.records.get(case.case_id)
            if rec is None:
                continue
            for side in rec.sides.values():
                if side.runs:
                    side.metrics["max_batch_size"] = MetricRuns.build(
                        "max_batch_size", [(float(size),)] * len(side.runs)
                    )
            if case.error is None:
                self._judge(rec)

    def _environment(self, side: Side) -> dict:
        profile = self.sides[side]
        env = environment.capture(profile.device, self.gpus, self.engine_info.get(side))
        env["profile"] = profile.describe()
        return env

    def notices(self) -> tuple[str, ...]:
        out = []
        if self.other_classes:
            out.append(
                f"no baseline for class {self.hardware_class}; baselines of this profile "
                f"exist for: {', '.join(self.other_classes)}"
            )
        if self.baseline is not None and not self.saving and self.baseline.runs_per_case <= 1:
            out.append(
                f"{self.baseline_path} holds one run per case: it is judged "
                f"conservatively; re-save it with --batchperf-save "
                f"(--batchperf-runs {DEFAULT_SAVE_RUNS})"
            )
        if self.baseline is not None and not self.saving and not self.ab:
            jobs = self.baseline.saved_jobs
            if jobs < stats.MIN_JOBS:
                prior = self.policy.job_prior
                out.append(
                    f"the baseline holds {jobs} save job(s): the variance between jobs is the "
                    f"default for this machine kind ({prior.s2**0.5:.0%}) until it holds "
                    f"{stats.MIN_JOBS}; "
                    "add jobs with --batchperf-save or batchperf baseline promote"
                )
        disturbed = self.remeasured | {
            cid for cid, c in self.cases.items() for r in c.runs if _disturbed(r.interference)
        }
        if disturbed:
            line = f"other work on the machine disturbed {len(disturbed)} case(s) (see warnings)"
            if self.remeasured:
                line += f"; {len(self.remeasured)} regressed on a disturbed run, measured again"
            if self.disturbed_verdicts:
                resting = ", ".join(sorted(self.disturbed_verdicts))
                line += f"; still disturbed, rerun on a quiet runner: {resting}"
            out.append(line)
        return tuple(out)

    def run_results(self, interrupted: bool = False) -> RunResults:
        assert self.profile is not None
        self._max_batch_sizes()
        base_cases = self.baseline.cases if self.baseline else {}
        files_run = {cid.split("::")[0] for cid in self.cases}
        # Only cases of files this run measured count as missing, so running one suite
        # file does not list every other file's cases.
        missing = tuple(
            sorted(
                cid
                for cid in base_cases
                if cid not in self.cases
                and cid not in self.infeasible
                and cid.split("::")[0] in files_run
            )
        )
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
            created=self.started,
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


def _disturbed(disturbance: Mapping[str, float]) -> bool:
    try:
        return bool(interference.Interference(**disturbance).warnings()) if disturbance else False
    except TypeError:
        return False
