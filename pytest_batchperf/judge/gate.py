"""Judging cases and whole runs (used by the plugin and the CLI).

The promise is per run of the whole suite: at most ``alpha`` of A/A runs raise a false
alarm. Half of it goes to the suite-wide tests (``suite_effects``), half to the cases:

- only a case's headline metrics (``HEADLINE``, or ``--batchperf-gate-metrics``) spend it;
  the others are shown with their change and never fail;
- each case gets an equal share (cases are judged as they finish, so Bonferroni);
- a case spreads its share over its looks with a group-sequential spending function
  (Lan-DeMets, Pocock type) on the fraction of its most runs: the planned look spends
  most of it, each run an inconclusive case adds spends what is left;
- within a look, Holm's step-down over the metric families (metrics of one family are one
  measurement, ``catalog``), which holds whatever the dependence between them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from ..device import Device
from ..plan import Side
from . import DEFAULT_ALPHA, DEFAULT_POWER, stats, trend
from .catalog import Direction, Kind, MetricSpec, lookup
from .decision import (
    Comparison,
    Verdict,
    compare,
    decide,
    log_ratios,
    summaries,
)
from .results import CaseResult, MetricRuns, Mode, RunResults

# The metrics that fail a case by default (a family name stands for its members); exact
# counts always do. The rest are shown with their change.
HEADLINE = (
    "throughput",
    "ttft_ms_p50",
    "tpot_ms_p50",
    "e2e_ms_p95",
    "peak_gpu_mem_mib",
    "peak_rss_mib",
)
# The metrics also judged across the whole suite (one of each family that matters).
SUITE_METRICS = ("output_tok_s", "ttft_ms_p50", "tpot_ms_p50", "e2e_ms_p50")


class CaseOverrides(Protocol):
    """What a case's marker may change of the policy (the session's CaseSettings)."""

    @property
    def tolerances(self) -> Mapping[str, float]: ...

    @property
    def gate_metrics(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class GatePolicy:
    tolerances: Mapping[str, float] = field(default_factory=dict)  # metric or "*" -> fraction
    alpha: float = DEFAULT_ALPHA  # false alarms per run of the whole suite
    power: float = DEFAULT_POWER  # for the smallest detectable change
    strict: bool = False  # inconclusive fails too
    # The profile's own tolerances (fitted to its hardware's noise): below the user's
    # choices, above the catalog's defaults.
    profile_tolerances: Mapping[str, float] = field(default_factory=dict)
    cases: int = 1  # cases the run judges
    looks: int = 1  # 1 + the runs an inconclusive case may add
    paired: bool = False  # A/B mode: its tighter default tolerances
    gate_metrics: tuple[str, ...] = ()  # empty: HEADLINE
    planned: int = 0  # runs (pairs) of a case's first look; 0: looks are equally spaced
    device: Device = Device.CPU  # the machine kind, for the default between-job variance
    pass_order: bool = False  # A/B: the cases of a pass share its engine processes

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", Device.of(self.device))  # from JSON: a string

    def gates(self, metric: MetricSpec) -> bool:
        """Can this metric fail a case?"""
        if metric.kind is Kind.EXACT:
            return True
        name = re.sub(r"_prio\d+$", "", metric.name)
        chosen = self.gate_metrics or HEADLINE
        return name in chosen or metric.family in chosen

    @property
    def suite_metrics(self) -> tuple[str, ...]:
        """The metrics judged across cases: SUITE_METRICS, or those of them a chosen
        gate set holds."""
        if not self.gate_metrics:
            return SUITE_METRICS
        return tuple(n for n in SUITE_METRICS if (s := lookup(n)) is not None and self.gates(s))

    @property
    def job_prior(self) -> stats.Prior:
        return stats.GPU_JOBS if self.device.gpu else stats.CPU_JOBS

    @property
    def pair_prior(self) -> stats.Prior:
        """A/B: the prior on pair log-ratio variance of a case with fewer than three pairs
        until three cases can fit one."""
        return stats.GPU_PAIRS if self.device.gpu else stats.CPU_PAIRS

    def look_share(self, runs: int) -> float:
        """The part of a case's alpha that its look with ``runs`` runs may spend."""
        if self.looks <= 1:
            return 1.0
        first = self.planned or 1
        most = first + self.looks - 1
        look = min(max(runs - first, 0), self.looks - 1)  # 0: the planned look

        def spent(n: float) -> float:
            return math.log1p((math.e - 1) * n / most)

        before = spent(first + look - 1) if look else 0.0
        return spent(first + look) - before

    def tolerance(self, metric: MetricSpec) -> float:
        for table in (self.tolerances, self.profile_tolerances):
            for key in (metric.name, "*"):
                if key in table:
                    return table[key]
        return metric.ab_tolerance if self.paired else metric.tolerance

    def merged(self, case: CaseOverrides) -> GatePolicy:
        """This policy with a case's marker tolerances and gated metrics over it."""
        if not case.tolerances and not case.gate_metrics:
            return self
        return replace(
            self,
            tolerances={**self.tolerances, **case.tolerances},
            gate_metrics=case.gate_metrics or self.gate_metrics,
        )

    def fails(self, verdict: Verdict) -> bool:
        return verdict in (Verdict.REGRESSED, Verdict.ERROR) or (
            self.strict and verdict is Verdict.INCONCLUSIVE
        )

    @property
    def case_alpha(self) -> float:
        """The cases' part of the run's false-alarm budget (the suite tests get half)."""
        return self.alpha / 2

    def look_alpha(self, runs: int) -> float:
        """One case's share of the run's budget at its look with ``runs`` runs."""
        return self.case_alpha / max(1, self.cases) * self.look_share(runs)

    def to_dict(self) -> dict[str, Any]:
        return {k: dict(v) if isinstance(v, Mapping) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GatePolicy:
        known = set(cls.__dataclass_fields__)
        d = {k: tuple(v) if k == "gate_metrics" else v for k, v in d.items() if k in known}
        return cls(**d)


def spec_for(name: str, current: MetricRuns) -> MetricSpec:
    # Metrics unknown to this version (from a newer baseline) are shown, never judged.
    return lookup(name) or MetricSpec(name, current.unit, Direction.INFO, 0.0)


def _fit(found: Mapping[str, list[tuple[float, int]]]) -> dict[str, stats.Prior]:
    out = {}
    for name, vs in found.items():
        prior = stats.fit_prior([v for v, _ in vs], [d for _, d in vs])
        if prior is not None:
            out[name] = prior
    return out


def jobs_key(name: str, part: str) -> str:
    """The key in ``priors`` of a metric's job component (``shared`` or ``case``)."""
    return f"{name}@{part}"


def priors(cases: Iterable[CaseResult]) -> dict[str, stats.Prior]:
    """Per metric, the prior across cases on between-run (within-job) log variance and,
    from two saved jobs on, under ``jobs_key`` the two parts of the variance of the jobs'
    means (``stats.job_components``), the cases' jobs matched by id."""
    found: dict[str, list[tuple[float, int]]] = {}
    deviations: dict[str, list[dict[str, float]]] = {}
    for case in cases:
        for name, runs in case.metrics.items():
            s = summaries(runs.runs)
            if len(s) < 2 or any(x <= 0 for x in s):
                continue
            groups = stats._split([math.log(x) for x in s], runs.jobs)
            ss = sum(stats._ss(g) for g in groups if len(g) > 1)
            df = sum(len(g) - 1 for g in groups if len(g) > 1)
            if df:
                found.setdefault(name, []).append((ss / df, df))
            offsets = trend.job_deviations(case, runs)
            if len(offsets) >= 2:
                deviations.setdefault(name, []).append(offsets)
    out = _fit(found)
    for name, devs in deviations.items():
        parts = stats.job_components(devs)
        if parts is not None:
            out[jobs_key(name, "shared")], out[jobs_key(name, "case")] = parts
    return out


def paired_priors(
    cases: Iterable[tuple[Mapping[str, MetricRuns], Mapping[str, MetricRuns]]],
) -> dict[str, stats.Prior]:
    """Per metric, the prior on the variance of paired log ratios, across cases."""
    found: dict[str, list[tuple[float, int]]] = {}
    for reference, candidate in cases:
        for name, runs in candidate.items():
            if name not in reference:
                continue
            v = stats.variance(log_ratios(reference[name].runs, runs.runs))
            if v is not None:
                found.setdefault(name, []).append(v)
    return _fit(found)


def judge_case(
    case: CaseResult,
    reference: Mapping[str, MetricRuns] | None,
    policy: GatePolicy,
    priors: Mapping[str, stats.Prior] | None = None,
    paired: bool = False,
    measured: int = 0,
) -> CaseResult:
    """The case's metrics against the reference's runs (a baseline case, or the A/B
    reference side when ``paired``); None: no reference, every metric is new.
    ``measured``: the runs (pairs) measured so far, where the case holds fewer (disturbed
    runs left out), so that the look, and its alpha, is the one the case is at."""
    if case.error is not None:
        return replace(case, verdict=Verdict.ERROR, comparisons=())
    specs = {name: spec_for(name, m) for name, m in case.metrics.items()}
    runs = max((len(m.runs) for m in case.metrics.values()), default=1)
    share = policy.look_alpha(max(runs, measured))
    tested = [
        n
        for n, s in specs.items()
        if reference is not None and n in reference and s.judged and s.kind is Kind.TIMED
    ]
    families = sorted({specs[n].family for n in tested if policy.gates(specs[n])})

    def judge(name: str, alpha: float) -> Comparison:
        assert reference is not None
        ref = reference[name]
        return compare(
            specs[name],
            ref.runs,
            case.metrics[name].runs,
            policy.tolerance(specs[name]),
            alpha,
            policy.power,
            _variance_prior(priors, name, policy.pair_prior if paired and runs < 3 else None),
            paired,
            jobs=ref.jobs,
            job_prior=None if paired else policy.job_prior,
            job_parts=_job_parts(priors, name),
        )

    first = share / max(1, len(families))
    found = {n: judge(n, first) for n in tested}
    alphas = _holm(families, specs, found, share)
    comparisons: list[Comparison] = []
    for name in sorted(case.metrics):
        cur, m = case.metrics[name], specs[name]
        if reference is None or name not in reference:
            comparisons.append(
                _untested(name, cur, Verdict.NEW, policy.tolerance(m), "no reference")
            )
        elif name not in found:
            comparisons.append(
                compare(m, reference[name].runs, cur.runs, policy.tolerance(m), first)
            )
        elif m.family in alphas:
            c = found[name]
            comparisons.append(c if alphas[m.family] == first else judge(name, alphas[m.family]))
        else:
            comparisons.append(_shown(found[name]))
    return case.with_comparisons(tuple(comparisons))


def _variance_prior(
    priors: Mapping[str, stats.Prior] | None, name: str, default: stats.Prior | None
) -> stats.Prior | None:
    """The prior fitted across cases, or ``default`` (A/B cases of one or two pairs: the
    machine kind's) where the fitted one rests on fewer degrees of freedom."""
    fitted = (priors or {}).get(name)
    if default is not None and (fitted is None or fitted.df < default.df):
        return default
    return fitted


def _job_parts(
    priors: Mapping[str, stats.Prior] | None, name: str
) -> tuple[stats.Prior, stats.Prior] | None:
    shared, own = ((priors or {}).get(jobs_key(name, p)) for p in ("shared", "case"))
    return (shared, own) if shared is not None and own is not None else None


def _holm(
    families: Sequence[str],
    specs: Mapping[str, MetricSpec],
    found: Mapping[str, Comparison],
    share: float,
) -> dict[str, float]:
    """Each gated family's alpha under Holm's step-down: families in order of their
    smallest p-value (either direction); the k-th tested at share / (m - k) while all
    before it were significant, the rest at the first level that was not."""

    p = dict.fromkeys(families, 1.0)
    for n, c in found.items():
        if specs[n].family in p and c.p_value is not None:
            p[specs[n].family] = min(p[specs[n].family], c.p_value, 1 - c.p_value)
    order = sorted(families, key=p.__getitem__)
    alphas, stopped = {}, None
    for k, family in enumerate(order):
        level = share / (len(order) - k)
        if stopped is None and p[family] >= level:
            stopped = level
        alphas[family] = stopped or level
    return alphas


def _shown(c: Comparison) -> Comparison:
    """A metric outside the gated set: its change and interval, never a failure."""
    changed = c.verdict in (Verdict.REGRESSED, Verdict.IMPROVED)
    return replace(
        c,
        verdict=Verdict.PASS,
        gated=False,
        runs_needed=None,
        note="not gated: " + ("changed" if changed else "unchanged"),
    )


def _untested(name: str, cur: MetricRuns, verdict: Verdict, tol: float, note: str) -> Comparison:
    return Comparison.untested(
        name,
        cur.unit,
        cur.direction,
        verdict,
        current=cur.median,
        tolerance=tol,
        n_current=len(cur.runs),
        note=note,
    )


def compare_runs(
    current: RunResults,
    baseline: RunResults | None,
    policy: GatePolicy,
    baseline_path: str | None = None,
) -> RunResults:
    """Judge every case of ``current`` against ``baseline`` (the CLI's compare);
    baseline cases it lacks are ``missing``."""
    base_cases = window(baseline)[0].cases if baseline else {}
    fitted = priors(base_cases.values())
    policy = replace(policy, cases=len(current.cases), paired=False)
    cases = {
        cid: judge_case(c, base_cases[cid].metrics if cid in base_cases else None, policy, fitted)
        for cid, c in current.cases.items()
    }
    return replace(
        current,
        cases=cases,
        suite=suite_effects(cases, policy, base_cases),
        missing=tuple(sorted(set(base_cases) - set(current.cases))),
        baseline_path=baseline_path,
        mode=Mode.BASELINE,
        gate=policy.to_dict(),
        baseline_environment=dict(baseline.environment) if baseline else None,
    )


def window(history: RunResults) -> tuple[RunResults, trend.Reading]:
    """The jobs of ``history`` the gate judges against (after the last change point, wild
    jobs left out), and how it read them."""
    reading = trend.read(history, SUITE_METRICS)
    return trend.judged(history, reading), reading


def failure_message(case: CaseResult, policy: GatePolicy) -> str:
    bad = [c for c in case.comparisons if policy.fails(c.verdict)]
    head = f"{case.case_id}: {len(bad)} metric(s) {case.verdict.value} against its reference"
    return "\n".join([head] + ["  " + c.line() for c in bad])


def rejudge_ab(
    run: RunResults, policy: GatePolicy, order: Sequence[str] | None = None
) -> RunResults:
    """An A/B run's cases and suite judged again from its recorded pairs. ``order``: the
    order the cases ran in, case by case; each is then judged, as it was live, with the
    prior of the cases measured up to it (else with the prior of all)."""
    policy = replace(policy, cases=len(run.cases), paired=True)
    ids = [cid for cid in order or () if cid in run.cases] or list(run.cases)
    ids += [cid for cid in run.cases if cid not in ids]
    sides = [(run.cases[cid].reference, run.cases[cid].metrics) for cid in ids]
    fitted = None if order else paired_priors(sides)
    cases = {
        cid: judge_case(
            run.cases[cid],
            run.cases[cid].reference,
            policy,
            paired_priors(sides[: i + 1]) if fitted is None else fitted,
            paired=True,
        )
        for i, cid in enumerate(ids)
    }
    return replace(run, cases=cases, suite=suite_effects(cases, policy), gate=policy.to_dict())


def suite_effects(
    cases: Mapping[str, CaseResult],
    policy: GatePolicy,
    baseline: Mapping[str, CaseResult] | None = None,
) -> tuple[Comparison, ...]:
    """Each suite metric's change across the cases: an upgrade that costs every case 8 %
    is plain across 20 cases long before any one case's few runs show it.

    - A/B in case order: Yuen's trimmed-mean test on the cases' mean pair log ratios
      (pairing cancels drift, so A/A effects scatter independently around zero), or the
      same ratios with the pairs' variance pooled within cases (``stats.pooled_pairs``),
      whichever is narrower, each at half the alpha. Cases take turns at opening with the
      candidate (``plan``), and the pooled mean weighs the two openings alike: an effect of
      a run's place in its case then cancels instead of moving every case the same way.
    - A/B in pass order: the cases of a pass share its engine processes and so an offset;
      the test is on the passes' trimmed means across cases (pairs - 1 df).
    - Against a committed baseline (``baseline``): the trimmed mean of the cases' changes,
      plus the offset every case of one job shares (from the saved jobs, else the machine
      kind's default), which no number of cases averages away."""
    names = policy.suite_metrics
    if not names:
        return ()
    alpha = (policy.alpha - policy.case_alpha) / len(names)
    out = []
    for name in names:
        spec = lookup(name)
        judged = [
            c
            for c in cases.values()
            if c.error is None and name in c.metrics and _reference(c, name, baseline)
        ]
        if spec is None or len(judged) < 3:
            continue
        est = _suite_estimate(name, judged, policy, baseline)
        if est is None:
            continue
        comp = decide(
            spec,
            est,
            dict(
                metric=name,
                unit=spec.unit,
                direction=spec.direction.value,
                tolerance=policy.tolerance(spec),
                n_reference=len(judged),
                n_current=len(judged),
            ),
            (math.nan, math.nan, math.exp(est.delta), math.expm1(est.delta)),
            policy.tolerance(spec),
            alpha,
            policy.power,
            "across cases",
        )
        out.append(replace(comp, runs_needed=None))
    return tuple(out)


def _reference(
    case: CaseResult, name: str, baseline: Mapping[str, CaseResult] | None
) -> MetricRuns | None:
    if baseline is None:
        return case.reference.get(name) if case.reference else None
    base = baseline.get(case.case_id)
    return base.metrics.get(name) if base else None


def _suite_estimate(
    name: str,
    cases: Sequence[CaseResult],
    policy: GatePolicy,
    baseline: Mapping[str, CaseResult] | None,
) -> stats.Estimate | None:
    if baseline is None:
        pairs = [log_ratios(c.reference[name].runs, c.metrics[name].runs) for c in cases]
        if policy.pass_order:
            passes = [[d[i] for d in pairs if len(d) > i] for i in range(max(map(len, pairs)))]
            means = [e.delta for p in passes if (e := stats.trimmed(p)) is not None]
            return stats.one_sample(means, policy.pair_prior)
        across = stats.trimmed([sum(d) / len(d) for d in pairs if d])
        pooled = stats.pooled_pairs(pairs, [_opener(c) for c in cases])
        tests = [e for e in (across, pooled) if e is not None]
        return stats.narrower_of(tests) if tests else None
    deltas, offsets = [], []
    for c in cases:
        base = baseline[c.case_id]
        ref = _logs(base.metrics[name])
        cur = _logs(c.metrics[name])
        if not ref or not cur:
            continue
        deltas.append(sum(cur) / len(cur) - sum(ref) / len(ref))
        offsets.append(trend.job_deviations(base, base.metrics[name]))
    spread = stats.trimmed(deltas)
    if spread is None:
        return None
    # the saved jobs' shared offsets: job j's mean change across the cases that hold it
    parts = stats.job_components(offsets) if len(offsets) > 1 else None
    jobs = max(1, *map(len, offsets))
    prior = policy.job_prior
    s2, df = stats.job_variance(parts[0].s2, parts[0].df, prior) if parts else (prior.s2, prior.df)
    return stats.combined(spread, (s2 * (1 + 1 / jobs), df))


def _opener(case: CaseResult) -> Side | None:
    """The side that opened the case's pair 1 (A/B case order: slots 2p - 1 and 2p are pair
    p, ABBA), from its first recorded run; None without run records."""
    if not case.runs:
        return None
    first = min(case.runs, key=lambda r: r.slot)
    if (first.slot + 1) // 2 % 2:  # an odd pair opens as pair 1 did
        return first.side
    return Side.CANDIDATE if first.side is Side.REFERENCE else Side.REFERENCE


def _logs(runs: MetricRuns) -> list[float] | None:
    s = summaries(runs.runs)
    return [math.log(x) for x in s] if s and all(x > 0 for x in s) else None


def suite_line(c: Comparison) -> str:
    """One readable line for a suite effect (its n counts cases, not runs)."""
    return (
        f"{c.metric} across {c.n_current} cases: {c.change:+.1%}{c.evidence()}; "
        f"tolerance {c.tolerance:.0%}, detectable "
        + (f"{c.detectable:.0%}" if c.detectable is not None and c.detectable <= 1 else "-")
    )
