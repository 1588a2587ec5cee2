"""A simulated runner for the gate's calibration and power: runs drawn from a nested
model of the noise the project measured, judged by the package's own gate.

A log metric of case c in run r of job j is

    mu_c + shift + host/job offset shared by every case of the job (``job_shared``)
         + the case's own job offset (``job_case``) + a pass offset shared by the cases
         of one engine process (A/B pass order, ``pass_shared``) + process (``process``)
         + round noise (``round``), each normal with the sd given (fractions ~ log)
         + in A/B, an effect of the run's place: the first run of a case (``first``) and
         the second run of a pair (``second``) run that much faster (log; negative: slower).

Committed mode: a baseline of ``jobs`` save jobs of ``k`` runs per case, then one
candidate job of ``runs`` runs; a case still inconclusive adds up to ``extend`` runs of its
job, one look each, as the plugin does. A/B mode: ``pairs`` pairs per case, in case or
pass order, each case's sides in the order the package's ``Plan`` lays them out.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from pytest_batchperf.judge import gate
from pytest_batchperf.judge.decision import Verdict
from pytest_batchperf.judge.history import Job
from pytest_batchperf.judge.results import CaseResult, MetricRuns, RunInfo, RunResults
from pytest_batchperf.plan import Plan, Side

# (metric, direction): throughput falls by the shift, latencies rise by it
METRICS = (("output_tok_s", 1), ("ttft_ms_p50", -1), ("tpot_ms_p50", -1), ("e2e_ms_p95", -1))


@dataclass(frozen=True)
class Noise:
    round: float = 0.03
    process: float = 0.05
    job_shared: float = 0.05
    job_case: float = 0.0
    pass_shared: float = 0.0
    first: float = 0.0
    second: float = 0.0


@dataclass(frozen=True)
class Design:
    cases: int = 30
    jobs: int = 3
    k: int = 5  # runs per case in a save job
    runs: int = 1  # candidate runs (committed mode)
    extend: int = 2  # runs an inconclusive candidate case may add (committed mode)
    pairs: int = 3  # A/B
    rounds: int = 3
    pass_order: bool = True  # A/B
    counterbalance: bool = True  # A/B case order: cases take turns at opening (``Plan``)
    device: str = "cpu"
    # committed: one saved job in the middle of the history this much slower (log), and
    # the older half of the history at another level (log: a change that landed then)
    wild_job: float = 0.0
    old_step: float = 0.0
    tolerance: float = 0.0  # every metric's (0: the catalog's defaults)


def _rounds(rng: random.Random, level: float, noise: Noise, n: int, sign: int) -> list[float]:
    base = 1000.0 if sign > 0 else 10.0
    return [base * math.exp(sign * (level + rng.gauss(0, noise.round))) for _ in range(n)]


def _case_metrics(runs: list[dict[str, list[float]]]) -> dict[str, MetricRuns]:
    return {name: MetricRuns.build(name, [r[name] for r in runs]) for name, _ in METRICS}


def _run(rng, design, noise, offsets, shifts) -> dict[str, list[float]]:
    """One engine process's rounds of every metric; ``offsets``: the shared log offsets."""
    out = {}
    for name, sign in METRICS:
        level = offsets + rng.gauss(0, noise.process) - shifts
        out[name] = _rounds(rng, level, noise, design.rounds, sign)
    return out


Extra = dict[str, list[dict[str, list[float]]]]  # case id -> its runs: planned, extension


def committed(
    rng: random.Random, design: Design, noise: Noise, shift: float, shifted: int | None = None
) -> tuple[RunResults, RunResults, Extra]:
    """(baseline, candidate job, every candidate case's runs with its extension runs).
    ``shift``: the log slowdown of every case, or of case ``shifted`` alone. The candidate is
    one more job: its own offsets, processes, rounds."""
    # offsets[j][i]: job j's log offset for case i (the last job is the candidate's)
    offsets = []
    for j in range(design.jobs + 1):
        shared = rng.gauss(0, noise.job_shared)
        shared += design.wild_job if j == design.jobs // 2 else 0.0
        shared += design.old_step if j < design.jobs // 2 else 0.0
        offsets.append([shared + rng.gauss(0, noise.job_case) for _ in range(design.cases)])
    env = {"device": design.device}
    base, cand, runs_of = {}, {}, {}
    sizes = tuple([design.k] * design.jobs) if design.jobs > 1 else ()
    ids = tuple(f"job-{j:02d}" for j in range(design.jobs))
    for i in range(design.cases):
        cid = f"c{i}"
        runs = [
            _run(rng, design, noise, offsets[j][i], 0.0)
            for j in range(design.jobs)
            for _ in range(design.k)
        ]
        metrics = {
            n: replace(m, runs=tuple((x,) for x in m.summaries), jobs=sizes)
            for n, m in _case_metrics(runs).items()
        }
        base[cid] = CaseResult(cid, "sim", metrics=metrics, jobs=ids)
        s = shift if shifted is None or shifted == i else 0.0
        runs_of[cid] = [_run(rng, design, noise, offsets[-1][i], s) for _ in range(design.runs)]
        cand[cid] = CaseResult(cid, "sim", metrics=_case_metrics(runs_of[cid]))
    for i in range(design.cases):  # drawn last: the planned runs do not depend on extend
        s = shift if shifted is None or shifted == i else 0.0
        more = [_run(rng, design, noise, offsets[-1][i], s) for _ in range(design.extend)]
        runs_of[f"c{i}"] += more
    return (
        RunResults("sim", "sim", env, base, kind="baseline", jobs=tuple(map(Job, ids))),
        RunResults("sim", "sim", env, cand),
        runs_of,
    )


def judge_committed(base: RunResults, cand: RunResults, runs: Extra, design: Design) -> RunResults:
    """The candidate judged as the plugin judges it: every case at its planned runs, then an
    inconclusive case at each run it adds, up to ``extend``; the suite test on the result."""
    policy = gate.GatePolicy(
        tolerances={"*": design.tolerance} if design.tolerance else {},
        looks=1 + design.extend,
        planned=design.runs,
        device=design.device,
        cases=len(cand.cases),
    )
    run = gate.compare_runs(cand, base, policy)
    window = gate.window(base)[0]
    priors = gate.priors(window.cases.values())
    cases = dict(run.cases)
    for cid, case in cases.items():
        n = design.runs
        while case.verdict is Verdict.INCONCLUSIVE and n < len(runs[cid]):
            n += 1
            more = CaseResult(cid, "sim", metrics=_case_metrics(runs[cid][:n]))
            case = gate.judge_case(more, window.cases[cid].metrics, policy, priors, measured=n)
        cases[cid] = case
    return replace(run, cases=cases, suite=gate.suite_effects(cases, policy, window.cases))


def _layout(design: Design, case: int) -> dict[tuple[Side, int], int]:
    """(side, pair) -> the run's slot index (1-based place in the case), as planned."""
    plan = Plan(design.pairs, ab=True)
    if design.counterbalance and not design.pass_order:
        plan = plan.counterbalanced(case)
    return {(s.side, (s.index - 1) // 2): s.index for s in plan.slots()}


def _place(noise: Noise, index: int) -> float:
    """The log offset of a case's run ``index`` (1-based) from its place alone."""
    return (noise.first if index == 1 else 0.0) + (noise.second if index % 2 == 0 else 0.0)


def ab(rng: random.Random, design: Design, noise: Noise, shift: float) -> RunResults:
    """One A/B job, judged: every case's pairs, their shared offsets by the order."""
    pass_offsets = [
        (rng.gauss(0, noise.pass_shared), rng.gauss(0, noise.pass_shared))
        for _ in range(design.pairs)
    ]
    job = rng.gauss(0, noise.job_shared)
    cases = {}
    for i in range(design.cases):
        ref, cand, infos = [], [], []
        layout = _layout(design, i)
        for p in range(design.pairs):
            if design.pass_order:
                a, b = pass_offsets[p]
            else:
                a, b = rng.gauss(0, noise.pass_shared), rng.gauss(0, noise.pass_shared)
            r, c = layout[(Side.REFERENCE, p)], layout[(Side.CANDIDATE, p)]
            ref.append(_run(rng, design, noise, job + a + _place(noise, r), 0.0))
            cand.append(_run(rng, design, noise, job + b + _place(noise, c), shift))
            infos += [RunInfo(r, Side.REFERENCE), RunInfo(c, Side.CANDIDATE)]
        cid = f"c{i}"
        cases[cid] = CaseResult(
            cid,
            "sim",
            metrics=_case_metrics(cand),
            reference=_case_metrics(ref),
            runs=tuple(sorted(infos, key=lambda r: r.slot)),
        )
    run = RunResults("sim", "sim", {"device": design.device}, cases, mode="ab")
    policy = gate.GatePolicy(
        looks=3,
        planned=design.pairs,
        paired=True,
        device=design.device,
        pass_order=design.pass_order,
    )
    return gate.rejudge_ab(run, policy, list(cases))


def failed(run: RunResults) -> tuple[bool, bool]:
    """(a case failed, the suite-wide test failed)."""
    policy = gate.GatePolicy()
    by_case = any(policy.fails(c.verdict) for c in run.cases.values())
    return by_case, any(policy.fails(c.verdict) for c in run.suite)


def rate(trials: int, seed: int, one) -> tuple[float, float, float]:
    """(whole-run failure rate, by a case, by the suite test) over ``trials`` runs."""
    rng = random.Random(seed)
    whole = cases = suite = 0
    for _ in range(trials):
        c, s = failed(one(rng))
        whole += c or s
        cases += c
        suite += s
    return whole / trials, cases / trials, suite / trials
