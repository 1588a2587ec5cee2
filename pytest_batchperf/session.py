"""One pytest session's batchperf state: profile, engine, baseline, and recorded cases.

Plain Python, no pytest imports: the hooks in plugin.py only forward to it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from . import baseline as baselines
from . import engines, environment
from .engines.base import Engine, EngineError
from .gate import GatePolicy, compare_case
from .options import Options
from .profiles import Profile, resolve
from .results import CaseResult, MetricSamples, RunResults
from .workload import sweep_key


@dataclass
class BatchperfSession:
    options: Options
    rootdir: Path
    profile: Profile | None = None
    hardware_class: str = ""
    baseline: RunResults | None = None
    cases: dict[str, CaseResult] = field(default_factory=dict)
    infeasible: dict[str, str] = field(default_factory=dict)
    engine_error: EngineError | None = None
    started: str = ""
    _engine: Engine | None = None
    _engine_info: dict | None = None
    _infeasible_params: dict[str, tuple[str, dict]] = field(default_factory=dict)
    _tolerances: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def policy(self) -> GatePolicy:
        return GatePolicy(self.options.tolerances, self.options.alpha, self.options.strict,
                          self.profile.tolerances if self.profile else {})

    @property
    def baseline_path(self) -> Path:
        return baselines.baseline_path(self.options.baseline_dir, self.hardware_class,
                                       self.profile.name)

    def prepare(self) -> None:
        """Resolve the profile and read its baseline. Raises ProfileError/BaselineError."""
        if self.profile is not None:
            return
        self.profile = resolve(self.options.profile, self.rootdir / "pyproject.toml",
                               self.options.profiles_file, self.options.overrides)
        self.hardware_class = environment.hardware_class(self.profile.device)
        self.baseline = baselines.load(self.baseline_path)
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def engine(self) -> Engine:
        """The session's engine, started on first use; a failed start is not retried."""
        if self.engine_error is not None:
            raise self.engine_error
        if self._engine is None:
            try:
                self._engine = engines.start(self.profile, self.options.timeout_s or None)
            except EngineError as exc:
                self.engine_error = exc
                raise
            self._engine_info = self._engine.describe()
        return self._engine

    def baseline_params(self, case_id: str) -> dict | None:
        """The params ``case_id`` ran with in the baseline, or None where it has no such case:
        a suite that derives its workload from a measurement (an offered request rate) reuses
        them, so that the gate compares the same workload."""
        case = self.baseline.cases.get(case_id) if self.baseline else None
        return copy.deepcopy(dict(case.params)) if case is not None else None

    def record(self, case: CaseResult, tolerances: dict[str, float] | None = None) -> CaseResult:
        base = self.baseline.cases.get(case.case_id) if self.baseline else None
        policy = self.policy.merged(tolerances) if tolerances else self.policy
        judged = compare_case(case, base, policy)
        self.cases[case.case_id] = judged
        if tolerances:
            self._tolerances[case.case_id] = tolerances
        return judged

    def record_infeasible(self, case_id: str, suite: str, params: dict, reason: str) -> None:
        """A case whose batch did not fit (OutOfMemory): the feasibility limit of its sweep."""
        self.infeasible[case_id] = reason
        self._infeasible_params[case_id] = (suite, dict(params))

    def _record_max_batch_sizes(self) -> None:
        """Give the largest case that fit in each sweep that hit a limit a ``max_batch_size``
        metric (compared exactly with the baseline), and judge it again."""
        limits: dict[tuple, int] = {}
        for suite, params in self._infeasible_params.values():
            key, size = (suite, *sweep_key(params)), int(params["batch_size"])
            limits[key] = min(limits.get(key, size), size)
        largest: dict[tuple, CaseResult] = {}
        for case in self.cases.values():
            key, size = (case.suite, *sweep_key(case.params)), case.params.get("batch_size")
            if key in limits and case.metrics and size is not None and size < limits[key]:
                if key not in largest or size > largest[key].params["batch_size"]:
                    largest[key] = case
        for case in largest.values():
            fit = MetricSamples.build("max_batch_size", [case.params["batch_size"]])
            self.record(replace(case, metrics={**case.metrics, "max_batch_size": fit}),
                        self._tolerances.get(case.case_id))

    def run_results(self, interrupted: bool = False) -> RunResults:
        self._record_max_batch_sizes()
        env = environment.capture(self.profile.device, self._engine_info)
        env["profile"] = self.profile.describe()
        base_cases = self.baseline.cases if self.baseline else {}
        files_run = {cid.split("::")[0] for cid in self.cases}
        # Only cases of files this run measured count as missing, so running one suite
        # file does not list every other file's cases.
        missing = tuple(sorted(cid for cid in base_cases
                               if cid not in self.cases and cid.split("::")[0] in files_run))
        return RunResults(
            profile=self.profile.name, hardware_class=self.hardware_class, environment=env,
            cases=dict(self.cases), created=self.started, interrupted=interrupted,
            baseline_path=str(self.baseline_path), missing=missing,
            baseline_environment=dict(self.baseline.environment) if self.baseline else None)

    def save_baseline(self, run: RunResults) -> Path:
        baselines.save(self.baseline_path, run)
        return self.baseline_path

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
