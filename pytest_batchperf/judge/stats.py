"""The gate's statistics, on plain numbers: the run is the unit.

A run (one fresh engine process) contributes one summary per metric: the median of its
rounds. Rounds of one process share that process's offset, so they are not independent
evidence; runs are. Changes are judged on the log of run summaries (a 10 % slowdown is the
same evidence at 10 tok/s and at 10,000 tok/s):

- against a committed baseline, a prediction interval: the candidate job's mean against
  the distribution of the baseline's K runs. The job counts once, however many runs it
  took: its runs sit minutes apart at most, and a slow phase of the machine lasts that
  long, so they share it. The baseline's runs, spread over the passes of a save, sample
  those phases; more candidate runs sharpen its mean, not the interval;
- in A/B mode, a paired t on the per-pair log ratios of interleaved runs (the pair shares
  the phase, and the ratio cancels it).

With a handful of runs per case a variance estimate is itself noisy, and a case whose few
runs happened to agree would look precise. So each case's variance is moderated with a
prior fitted across the cases of the run for the same metric (Smyth 2004, limma's
squeezeVar): the posterior variance pools ``d0`` prior degrees of freedom with the case's
own, in both directions, and is judged with ``d0 + d`` degrees of freedom. Only a case
whose variance is an outlier under the prior (F test, ``OUTLIER_P``) keeps its own: a case a
little noisier than its peers stays testable.

Between-job variance (a later CI job, another host of the class) is not in one job's runs.
A committed baseline keeps the runs of its last jobs (a history); their spread is moderated
by ``CPU_JOBS`` / ``GPU_JOBS``, the machine kind's between-job variance, worth
``JOB_PRIOR_DF`` jobs (``prediction``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

# A prior is never worth more degrees of freedom than went into fitting it, nor this many.
DF_CAP = 1000.0


@dataclass(frozen=True)
class Prior:
    """Scaled inverse-chi-square prior on a metric's between-run log variance."""

    s2: float
    df: float


def _trigamma_inverse(x: float) -> float:
    """y with trigamma(y) = x (Smyth's Newton iteration, as in limma)."""
    from scipy.special import polygamma

    if x > 1e7:
        return 1 / math.sqrt(x)
    if x < 1e-6:
        return 1 / x
    y = 0.5 + 1 / x
    for _ in range(50):
        tri = float(polygamma(1, y))
        dif = tri * (1 - tri / x) / float(polygamma(2, y))
        y += dif
        if -dif / y < 1e-8:
            break
    return y


def fit_prior(variances: Sequence[float], dfs: Sequence[float]) -> Prior | None:
    """The prior behind per-case variances ``variances`` with ``dfs`` degrees of freedom
    (limma's fitFDist without covariate); None with fewer than three usable cases."""
    from scipy.special import digamma, polygamma

    pairs = [
        (s2, d)
        for s2, d in zip(variances, dfs, strict=True)
        if d >= 1 and s2 > 0 and math.isfinite(s2)
    ]
    if len(pairs) < 3:
        return None
    e = [math.log(s2) - float(digamma(d / 2)) + math.log(d / 2) for s2, d in pairs]
    n = len(e)
    emean = sum(e) / n
    evar = (
        sum((x - emean) ** 2 for x in e) / (n - 1)
        - sum(float(polygamma(1, d / 2)) for _, d in pairs) / n
    )
    total = float(sum(d for _, d in pairs))
    if evar > 0:
        d0 = 2 * _trigamma_inverse(evar)
        s0 = math.exp(emean + float(digamma(d0 / 2)) - math.log(d0 / 2))
    else:  # the cases' variances differ no more than sampling explains: pool them
        d0, s0 = math.inf, math.exp(emean)
    return Prior(s0, min(d0, total, DF_CAP))


def moderate(s2: float | None, df: float, prior: Prior | None) -> tuple[float, float] | None:
    """(variance, degrees of freedom) to judge with; None when there is no estimate at all."""
    if prior is None:
        return (s2, df) if s2 is not None and df > 0 else None
    if s2 is None or df <= 0:
        return prior.s2, prior.df
    if s2 > prior.s2 and _outlier(s2, df, prior):
        return s2, df
    posterior = (prior.df * prior.s2 + df * s2) / (prior.df + df)
    return posterior, min(prior.df + df, DF_CAP)


OUTLIER_P = 0.01  # a case this unlikely under the prior keeps its own variance


def _outlier(s2: float, df: float, prior: Prior) -> bool:
    from scipy import stats as sps

    return bool(sps.f.sf(s2 / prior.s2, df, prior.df) < OUTLIER_P)


# Between-job log variance of a machine kind (docs/gate.md): a weak prior worth
# ``JOB_PRIOR_DF`` jobs, for histories too short to know their own spread (``job_variance``).
JOB_PRIOR_DF = 8.0
OWN_JOBS_DF = 2  # from three jobs a history's own spread is judged alone
CPU_JOBS = Prior(0.10**2, JOB_PRIOR_DF)
GPU_JOBS = Prior(0.05**2, JOB_PRIOR_DF)
MIN_JOBS = OWN_JOBS_DF + 1  # below this many jobs the default weighs in (summary)

# A/B: pair log-ratio variance assumed until three cases can fit a prior (and for the
# suite's pass offsets), worth a few runs of evidence: wider than the runners showed.
CPU_PAIRS = Prior(0.15**2, 6.0)
GPU_PAIRS = Prior(0.05**2, 6.0)


def job_variance(s2: float, df: float, prior: Prior) -> tuple[float, float]:
    """The between-job variance to judge with, from a history's own (``s2`` on ``df``): its
    own from ``OWN_JOBS_DF`` degrees of freedom on (a t test on it is exact whatever the
    runner's noise, so a prior could only cost power), or where it is the larger (pulled
    toward a quieter default, a noisy runner's false alarms would rise); else, one or two
    jobs, moderated up by the machine kind's ``prior``."""
    if df >= OWN_JOBS_DF or s2 >= prior.s2:
        return s2, df
    return moderate(s2, df, prior) or (prior.s2, prior.df)


def job_means_variance(job_means: Sequence[float]) -> tuple[float, float] | None:
    """(variance, df) of the saved jobs' means of one case; None below two jobs."""
    if len(job_means) < 2:
        return None
    d = len(job_means) - 1
    return _ss(job_means) / d, d


def job_components(deviations: Sequence[Mapping[str, float]]) -> tuple[Prior, Prior] | None:
    """The variance of saved jobs' means split across cases: (the offset every case of a
    job shares, with jobs - 1 df; the cases' own job noise, with the rest of the two-way
    layout's df). ``deviations[c]``: job id -> that job's mean less case c's mean (log); a
    case may lack jobs. A shared offset is only as well known as the number of jobs,
    however many cases share it."""
    jobs = sorted({j for d in deviations for j in d})
    cells = sum(len(d) for d in deviations)
    if len(deviations) < 2 or len(jobs) < 2:
        return None
    shared = {j: _mean([d[j] for d in deviations if j in d]) for j in jobs}
    resid = sum((v - shared[j]) ** 2 for d in deviations for j, v in d.items())
    own_df = cells - len(deviations) - len(jobs) + 1
    if own_df < 1:
        return None
    spread = _ss(list(shared.values())) / (len(jobs) - 1)
    return Prior(spread, len(jobs) - 1), Prior(resid / own_df, own_df)


def _satterthwaite(parts: Sequence[tuple[float, float]]) -> float:
    """Degrees of freedom of a sum of variance estimates (value, df)."""
    total = sum(v for v, _ in parts)
    denom = sum(v * v / d for v, d in parts if d > 0 and math.isfinite(d) and v > 0)
    return min(DF_CAP, total * total / denom) if denom > 0 else DF_CAP


@dataclass(frozen=True)
class Estimate:
    """A log-ratio estimate (candidate over reference) and its uncertainty."""

    delta: float
    se: float
    df: float
    n_reference: int
    n_candidate: int
    # se**2 = floor + per_run / n_candidate: what more candidate runs would remove
    per_run: float = 0.0
    # valid estimates the rule chose the narrower of, without looking at delta: the test
    # splits its alpha among them (Bonferroni)
    choices: int = 1

    def runs_for(self, shift: float, alpha: float, most: int = 100) -> int | None:
        """Candidate runs for a one-sided test at ``alpha`` to tell ``shift``, each run
        adding a degree of freedom (None: not within ``most``, or the floor is too high)."""
        if self.per_run <= 0:
            return None
        import numpy as np

        floor = self.se**2 - self.per_run / self.n_candidate
        n = np.arange(self.n_candidate, most + 1)
        z = _t_quantile(1 - alpha, self.df + n - self.n_candidate)
        told = np.flatnonzero(floor + self.per_run / n <= (shift / z) ** 2)
        return int(n[told[0]]) if told.size else None


def _mean(x: Sequence[float]) -> float:
    return sum(x) / len(x)


def _ss(x: Sequence[float]) -> float:
    m = _mean(x)
    return sum((v - m) ** 2 for v in x)


def prediction(
    reference: Sequence[float],
    candidate: Sequence[float],
    prior: Prior | None,
    jobs: Sequence[int] = (),
    job_prior: Prior | None = None,
    job_parts: tuple[Prior, Prior] | None = None,
) -> Estimate | None:
    """The candidate job's mean against the reference's (log summaries). ``jobs``: how many
    of the reference runs each saved job took, in order (empty: one job). Without a
    ``job_prior`` the candidate counts as one new draw from the reference runs (gate v2);
    with one, the nested model: its mean differs by a job effect (variance from the saved
    jobs, split by ``job_components`` across cases, the shared part moderated by the
    machine kind's ``job_prior``) plus process noise averaged over its runs and the
    reference's."""
    nb, nc = len(reference), len(candidate)
    if not nb or not nc:
        return None
    delta = _mean(candidate) - _mean(reference)
    if job_prior is None:
        judged = moderate(_ss(reference) / (nb - 1) if nb > 1 else None, nb - 1, prior)
        if judged is None:
            return None
        s2, df = judged
        return Estimate(delta, math.sqrt(s2 * (1 + 1 / nb)), df, nb, nc)
    groups = _split(reference, jobs)
    within_ss = sum(_ss(g) for g in groups if len(g) > 1)
    within_df = sum(len(g) - 1 for g in groups if len(g) > 1)
    j, k = len(groups), nb / len(groups)
    spread = job_means_variance([_mean(g) for g in groups])
    judged = moderate(within_ss / within_df if within_df else None, within_df, prior)
    if judged is None and spread is not None and nc >= k:
        judged = (0.0, DF_CAP)  # jobs of one run: their spread holds all the noise
    if judged is None:
        return None
    s2p, dfp = judged
    if spread is None:  # one job: the machine kind's default alone, and process noise
        parts = [(job_prior.s2 * (1 + 1 / j), job_prior.df), (s2p * (1 / nc + 1 / nb), dfp)]
    else:
        # The saved jobs' means vary by the job variance plus process noise / k: in those
        # terms the candidate's job mean differs by spread (1 + 1/j) + s2p (1/nc - 1/k).
        # The part every case shares is known to jobs - 1 df however many cases there
        # are (``job_variance``); the case's own part has df enough.
        found = [(p.s2, p.df) for p in job_parts] if job_parts else [spread]
        found[0] = job_variance(found[0][0], found[0][1], job_prior)
        parts = [(v * (1 + 1 / j), d) for v, d in found]
        parts.append((s2p * max(0.0, 1 / nc - 1 / k), dfp))
    se = math.sqrt(sum(v for v, _ in parts))
    return Estimate(delta, se, _satterthwaite(parts), nb, nc, per_run=s2p)


def narrower_of(found: Sequence[Estimate], at: float = 1e-3) -> Estimate:
    """The estimate of ``found`` whose interval at ``at`` is narrowest, chosen by width
    alone (never the change) and marked to be tested at alpha / len(found)."""
    best = min(found, key=lambda e: float(_t_quantile(1 - at, e.df)) * e.se)
    return replace(best, choices=len(found))


def _split(values: Sequence[float], sizes: Sequence[int]) -> list[list[float]]:
    """``values`` cut into consecutive groups of ``sizes`` (one group when they don't fit)."""
    if not sizes or sum(sizes) != len(values) or min(sizes) < 1:
        return [list(values)]
    out, i = [], 0
    for k in sizes:
        out.append(list(values[i : i + k]))
        i += k
    return out


def paired(diffs: Sequence[float], prior: Prior | None) -> Estimate | None:
    """Per-pair log ratios of interleaved runs."""
    n = len(diffs)
    if not n:
        return None
    own = _ss(diffs) / (n - 1) if n > 1 else None
    judged = moderate(own, n - 1, prior)
    if judged is None:
        return None
    s2, df = judged
    return Estimate(_mean(diffs), math.sqrt(s2 / n), df, n, n, per_run=s2)


def trimmed(values: Sequence[float], share: float = 0.2) -> Estimate | None:
    """Yuen's one-sample test: the mean of ``values`` with ``share`` cut from each end, its
    standard error from the winsorized variance (Wilcox 2012). A few wild values (a pair a
    slow phase hit on one side) move it little, where they would swamp a plain mean."""
    n = len(values)
    k = math.floor(share * n)
    if n - 2 * k < 2:
        return None
    x = sorted(values)
    kept = x[k : n - k]
    winsorized = [x[k]] * k + kept + [x[n - k - 1]] * k
    se = math.sqrt(_ss(winsorized) / (n - 1)) / ((1 - 2 * k / n) * math.sqrt(n))
    return Estimate(_mean(kept), se, n - 2 * k - 1, n, n)


def pooled_pairs(
    groups: Sequence[Sequence[float]], strata: Sequence[object] = ()
) -> Estimate | None:
    """The mean of the cases' mean pair log ratios, its variance from the pairs within each
    case pooled across cases: cases whose pairs are their own processes (A/B case order)
    give every pair's degree of freedom, where a test on the cases' means alone has
    cases - 1. Not moderated: a default narrower than the runner's spread would make the
    test too bold, and the pooled estimate has df enough of its own. ``strata``: each
    case's stratum (the side that opened its pairs); each stratum's mean counts alike, so
    an offset of opposite sign in the two cancels whatever the number of cases in each."""
    keys = list(strata) or [None] * len(groups)
    kept = [(g, k) for g, k in zip(groups, keys, strict=True) if g]
    df = sum(len(g) - 1 for g, _ in kept)
    if len(kept) < 2 or df < 2:
        return None
    s2 = sum(_ss(g) for g, _ in kept) / df
    by: dict[object, list[Sequence[float]]] = {}
    for g, k in kept:
        by.setdefault(k, []).append(g)
    # a stratum's mean of case means has variance s2 * sum(1 / pairs) / cases**2
    spread = sum(sum(1 / len(g) for g in gs) / len(gs) ** 2 for gs in by.values())
    se = math.sqrt(s2 * spread) / len(by)
    delta = _mean([_mean([_mean(g) for g in gs]) for gs in by.values()])
    return Estimate(delta, se, df, len(kept), len(kept))


def combined(est: Estimate, shared: tuple[float, float]) -> Estimate:
    """``est`` with one more variance component (value, df) that it does not average out:
    the machine's offset shared by every case of a job."""
    parts = [(est.se**2, est.df), shared]
    return replace(est, se=math.sqrt(sum(v for v, _ in parts)), df=_satterthwaite(parts))


def one_sample(values: Sequence[float], prior: Prior | None = None) -> Estimate | None:
    """The mean of ``values``, its variance moderated with ``prior``."""
    n = len(values)
    judged = moderate(_ss(values) / (n - 1) if n > 1 else None, n - 1, prior)
    if not n or judged is None:
        return None
    s2, df = judged
    return Estimate(_mean(values), math.sqrt(s2 / n), df, n, n)


def variance(values: Sequence[float]) -> tuple[float, int] | None:
    """(sample variance, degrees of freedom) of ``values``; None for fewer than two."""
    return (_ss(values) / (len(values) - 1), len(values) - 1) if len(values) > 1 else None


def _t_quantile(q: float, df: Any) -> Any:
    """Student t quantile (``df`` may be an array): scipy's ufunc, not ``stats.t.ppf``,
    whose argument checks cost 50 times the computation in the gate's inner loops."""
    from scipy.special import stdtrit

    return stdtrit(df, q)


def _t_cdf(x: float, df: float) -> float:
    from scipy.special import stdtr

    return float(stdtr(df, x))


def p_below(est: Estimate) -> float:
    """One-sided p-value that the true log ratio is below zero (evidence of a drop)."""
    if est.se == 0:
        return 0.0 if est.delta < 0 else 1.0
    return _t_cdf(est.delta / est.se, est.df)


def p_above(est: Estimate) -> float:
    if est.se == 0:
        return 0.0 if est.delta > 0 else 1.0
    return _t_cdf(-est.delta / est.se, est.df)


def bounds(est: Estimate, alpha: float) -> tuple[float, float]:
    """One-sided ``alpha`` bounds on each side of the log ratio."""
    q = float(_t_quantile(1 - alpha, est.df)) * est.se
    return est.delta - q, est.delta + q


def detectable(est: Estimate, alpha: float, power: float) -> float:
    """The smallest log-ratio shift detected with probability ``power`` by a one-sided test
    at ``alpha`` with this estimate's standard error and degrees of freedom."""
    return float(_t_quantile(1 - alpha, est.df) + _t_quantile(power, est.df)) * est.se


def welch(reference: Sequence[float], candidate: Sequence[float]) -> Estimate | None:
    """Rounds of one run against rounds of another (log values): for 1-run baselines only,
    whose between-run noise is unknown."""
    nb, nc = len(reference), len(candidate)
    if nb < 2 or nc < 2:
        return None
    vb, vc = _ss(reference) / (nb - 1) / nb, _ss(candidate) / (nc - 1) / nc
    se2 = vb + vc
    if se2 <= 0:
        return Estimate(_mean(candidate) - _mean(reference), 0.0, float(nb + nc - 2), nb, nc)
    df = se2**2 / ((vb**2 / (nb - 1) if vb else 0) + (vc**2 / (nc - 1) if vc else 0))
    return Estimate(_mean(candidate) - _mean(reference), math.sqrt(se2), df, nb, nc)
