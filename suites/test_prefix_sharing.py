"""Prefix sharing: requests whose prompts start with a shared system prompt against
requests of the same lengths that share nothing.

An engine with a prefix cache (vLLM's enable_prefix_caching, llama_cpp.server reusing
the previous prompt) prefills the shared part once and answers faster; one without it
(the in-process llama-cpp engine) shows the same numbers for both. To measure the cache
itself on one engine, run this suite under two profiles that differ only in its switch
(e.g. ``--batchperf-set enable_prefix_caching=false``) and compare the reports.
"""

import pytest

from .workloads import PREFIX_DISTINCT, PREFIX_SHARED, output_tokens

BATCH = 8
WORKLOADS = {"shared": PREFIX_SHARED, "distinct": PREFIX_DISTINCT}


@pytest.mark.batchperf(rounds=3)
@pytest.mark.parametrize("prompts", list(WORKLOADS))
@pytest.mark.parametrize("strategy", ["sequential", "continuous"])
def test_prefix_sharing(batchperf, batchperf_engine, prompts, strategy, record_property):
    record_property(
        "batchperf.prefix_cache", str(batchperf_engine.supports("prefix_cache")).lower()
    )
    wl = WORKLOADS[prompts]
    case = batchperf.run(wl, strategy, 1 if strategy == "sequential" else BATCH)
    assert case.metrics["output_tokens"].median == output_tokens(case, wl)
