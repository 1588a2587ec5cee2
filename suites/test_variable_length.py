"""Mixed prompt and output lengths: the padding static batching wastes, what bucketing
by length saves, and continuous batching, which pads nothing."""

import pytest

from .workloads import MIXED


@pytest.mark.batchperf(batch_sizes=[8, 16])
@pytest.mark.parametrize("strategy", ["static", "bucketed", "dynamic", "continuous"])
def test_variable_length(batchperf, strategy, batch_size):
    case = batchperf.run(MIXED, strategy, batch_size)
    waste = case.metrics.get("padding_waste_pct")
    if strategy == "continuous":
        assert waste is None  # nothing is padded
    else:
        assert 0 < waste.median < 100
