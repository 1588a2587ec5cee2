"""The workloads the suites share: seeded, so baselines stay comparable."""

from pytest_batchperf.workload import WorkloadSpec, fixed, lognormal, uniform

# Fixed lengths: the batch-size sweep measures batching, not length variance.
SWEEP = WorkloadSpec(name="sweep", num_requests=64, prompt=fixed(32), output=fixed(64), seed=1)

# Mixed lengths: where static batching pays for padding and bucketing helps.
MIXED = WorkloadSpec(
    name="mixed",
    num_requests=64,
    prompt=lognormal(48, sigma=0.9, low=4, high=384),
    output=uniform(8, 96),
    seed=2,
)
