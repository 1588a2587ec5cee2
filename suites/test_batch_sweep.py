"""Throughput and latency over batch sizes: sequential vs static vs continuous.

The terminal summary prints each sweep the way batching tutorials do
("Batch size: 8 ... Throughput ... Optimal batch size: 32").
"""

import pytest

from .workloads import SWEEP, output_tokens


def test_sequential(batchperf):
    case = batchperf.run(SWEEP, "sequential", batch_size=1)
    assert case.metrics["output_tokens"].median == output_tokens(case, SWEEP)


@pytest.mark.parametrize("strategy", ["static", "continuous"])
def test_batch_sweep(batchperf, strategy, batch_size):
    case = batchperf.run(SWEEP, strategy, batch_size)
    assert case.metrics["output_tokens"].median == output_tokens(case, SWEEP)
