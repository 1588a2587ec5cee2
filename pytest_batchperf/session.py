"""One pytest session's batchperf state: the plugin's hooks and the fixture forward to it.

Plain Python, no pytest. ``prepare`` sets the run up (``prepared``: profiles, models, the
baseline, all or nothing), the policy and the plan follow from the options and the profile,
the engines' processes come from an ``EnginePool``, and each case runs and is judged in the
``CaseRunner`` (``case_runner``), to which the session is the ``RunContext``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from . import run_summary
from .case_runner import CaseRunner
from .device import Device
from .engine_pool import EnginePool
from .engines.base import Engine
from .judge import DEFAULT_KEEP_JOBS, gate, history
from .judge import baseline as baselines
from .judge.results import CaseResult, RunResults
from .measure import environment
from .measure.interference import usable_cores
from .models.resolve import ModelError
from .options import DEFAULT_SAVE_RUNS, Interleave, Options
from .plan import Plan, Side, Slot
from .prepared import Prepared, prepare
from .profiles import Profile, ProfileError
from .workload.spec import CaseSpec


class BatchperfSession:
    def __init__(self, options: Options, rootdir: Path):
        self.options = options
        self.rootdir = rootdir
        self.setup: Prepared | None = None
        self._job: history.Job | None = None  # this job's record, made once
        self.planned_cases = 1  # set from the collected items: shares the alpha budget
        self.current_slot: Slot | None = None  # set by the pass loop; None: all slots inline
        self.runner = CaseRunner(self)
        self.run_case = self.runner.run_case
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
        self.runner.add_cases(cases)

    def worker_cases(self) -> dict[str, dict]:
        """What an xdist worker hands its controller: its judged cases, as JSON data."""
        return {cid: c.to_dict() for cid, c in self.runner.cases.items()}

    @property
    def measured(self) -> bool:
        return self.runner.measured

    def final_slot(self, marker_runs: int | None = None) -> bool:
        """Whether the current slot is a case's last planned one: the run pytest reports."""
        slots = self.plan(marker_runs).slots()
        return self.current_slot is None or self.current_slot == slots[-1]

    # -- set-up ----------------------------------------------------------------------

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
    def prepared(self) -> bool:
        return self.setup is not None

    def ready(self) -> Prepared:
        assert self.setup is not None, "prepare() first"
        return self.setup

    @property
    def profile(self) -> Profile | None:
        """The candidate's profile, once prepared."""
        return self.setup.profile if self.setup else None

    @property
    def engines(self) -> EnginePool:
        if self._engines is None:
            s = self.ready()
            self._engines = EnginePool(s.sides, s.specs, self.options.timeout_s)
        return self._engines

    @property
    def ab(self) -> bool:
        return self.options.ab

    @property
    def saving(self) -> bool:
        return self.options.save

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
        baseline = self.ready().baseline if self.setup else None
        base = baseline.cases.get(case_id) if baseline else None
        if base is not None and base.spec is not None:
            return base.spec
        rec = self.runner.records.get(case_id)
        return rec.spec if rec is not None else None

    def sized_case(self, spec: CaseSpec) -> CaseSpec:
        assert self.profile is not None
        return replace(spec, workload=self.profile.sized_workload(spec.workload, spec.batch_size))

    # -- the run ---------------------------------------------------------------------

    def _environment(self, side: Side) -> dict:
        ready = self.ready()
        profile = ready.sides[side]
        env = environment.capture(profile.device, ready.gpus, self.engines.info.get(side))
        env["profile"] = profile.describe()
        return env

    def notices(self) -> tuple[str, ...]:
        r = self.runner
        return run_summary.notices(
            self.ready(),
            self.policy,
            self.saving,
            r.cases,
            r.remeasured,
            r.disturbed_verdicts,
            self.engines.info.values(),
            usable_cores(),
        )

    def run_results(self, interrupted: bool = False) -> RunResults:
        cases, infeasible = self.runner.finished_cases()
        reference = self._environment(Side.REFERENCE) if self.ab else None
        candidate = self._environment(Side.CANDIDATE)
        if self._job is None:
            self._job = history.new_job(self.ready().started, candidate, self.rootdir)
        return run_summary.run_results(
            self.ready(),
            self.policy,
            cases,
            infeasible,
            (candidate, reference),
            self.notices(),
            saving=self.saving,
            interrupted=interrupted,
            job=self._job,
        )

    def save_baseline(self, run: RunResults) -> Path:
        path = self.ready().baseline_path
        profile_keeps = self.profile.baseline_jobs if self.profile else None
        baselines.save(path, run, self.options.baseline_jobs or profile_keeps or DEFAULT_KEEP_JOBS)
        return path
