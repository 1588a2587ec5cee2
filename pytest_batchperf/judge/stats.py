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
moderated t): the posterior variance pools ``d0`` prior degrees of freedom with the case's
own. The prior only ever widens an interval: a case noisier than the prior keeps its own
variance and degrees of freedom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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
    posterior = (prior.df * prior.s2 + df * s2) / (prior.df + df)
    if s2 >= posterior:  # noisier than its peers: its own estimate, its own df
        return s2, df
    return posterior, min(prior.df + df, DF_CAP)


@dataclass(frozen=True)
class Estimate:
    """A log-ratio estimate (candidate over reference) and its uncertainty."""

    delta: float
    se: float
    df: float
    n_reference: int
    n_candidate: int


def _mean(x: Sequence[float]) -> float:
    return sum(x) / len(x)


def _ss(x: Sequence[float]) -> float:
    m = _mean(x)
    return sum((v - m) ** 2 for v in x)


def prediction(
    reference: Sequence[float], candidate: Sequence[float], prior: Prior | None
) -> Estimate | None:
    """The candidate's mean as one new draw from the reference runs' distribution (log
    summaries): the variance is the reference's between-run variance, moderated."""
    nb, nc = len(reference), len(candidate)
    if not nb or not nc:
        return None
    judged = moderate(_ss(reference) / (nb - 1) if nb > 1 else None, nb - 1, prior)
    if judged is None:
        return None
    s2, df = judged
    return Estimate(_mean(candidate) - _mean(reference), math.sqrt(s2 * (1 + 1 / nb)), df, nb, nc)


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
    return Estimate(_mean(diffs), math.sqrt(s2 / n), df, n, n)


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


def variance(values: Sequence[float]) -> tuple[float, int] | None:
    """(sample variance, degrees of freedom) of ``values``; None for fewer than two."""
    return (_ss(values) / (len(values) - 1), len(values) - 1) if len(values) > 1 else None


def _t():
    from scipy import stats

    return stats.t


def p_below(est: Estimate) -> float:
    """One-sided p-value that the true log ratio is below zero (evidence of a drop)."""
    if est.se == 0:
        return 0.0 if est.delta < 0 else 1.0
    return float(_t().cdf(est.delta / est.se, est.df))


def p_above(est: Estimate) -> float:
    if est.se == 0:
        return 0.0 if est.delta > 0 else 1.0
    return float(_t().sf(est.delta / est.se, est.df))


def bounds(est: Estimate, alpha: float) -> tuple[float, float]:
    """One-sided ``alpha`` bounds on each side of the log ratio."""
    q = float(_t().ppf(1 - alpha, est.df)) * est.se
    return est.delta - q, est.delta + q


def detectable(est: Estimate, alpha: float, power: float) -> float:
    """The smallest log-ratio shift detected with probability ``power`` by a one-sided test
    at ``alpha`` with this estimate's standard error and degrees of freedom."""
    t = _t()
    return float(t.ppf(1 - alpha, est.df) + t.ppf(power, est.df)) * est.se


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
