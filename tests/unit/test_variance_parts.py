"""gate-quality's split of the variance into job, process and round parts recovers the
parts of simulated nested noise (log-normal, as the gate models it)."""

import math
import random

import pytest

from pytest_batchperf.quality import Repetition, variance_parts


def _job(rng, job_sd, proc_sd, round_sd, processes, rounds):
    shift = rng.gauss(0, job_sd)
    runs = []
    for _ in range(processes):
        offset = shift + rng.gauss(0, proc_sd)
        runs.append([100 * math.exp(offset + rng.gauss(0, round_sd)) for _ in range(rounds)])
    return runs


@pytest.mark.parametrize("parts", [(0.10, 0.03, 0.01), (0.0, 0.05, 0.02), (0.04, 0.0, 0.03)])
def test_variance_parts_recovers_simulated_parts(parts):
    rng = random.Random(1)
    reps = []
    for i in range(60):  # A/A jobs of three processes a side: six per job
        ref, cand = {}, {}
        for c in range(5):
            runs = _job(rng, *parts, processes=6, rounds=5)
            ref[f"c{c}"] = {"output_tok_s": runs[:3]}
            cand[f"c{c}"] = {"output_tok_s": runs[3:]}
        reps.append(Repetition(i, 0.0, 0, 1.0, runs=cand, ref_runs=ref))
    reps.append(Repetition(99, 0.25, 1, 1.0, runs={"c0": {"output_tok_s": [[1.0, 2.0]]}}))
    job, proc, rnd = variance_parts(reps)["output_tok_s"]
    for got, want in zip((job, proc, rnd), parts, strict=True):
        assert got == pytest.approx(want, abs=0.012)
