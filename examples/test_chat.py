"""My own benchmark: a chat-like workload, static against continuous batching.

Run it from the project root on the built-in default profile (llama.cpp on a synthetic
tiny model, on the CPU), or on the profile pyproject.toml declares for it:

    pytest examples/test_chat.py
    pytest examples/test_chat.py --batchperf-profile chat-cpu --batchperf-save
"""

import pytest

from pytest_batchperf.workload import WorkloadSpec, build, lognormal, uniform

# Seeded: every run sends the same requests, so a baseline stays comparable.
CHAT = WorkloadSpec(
    name="chat",
    num_requests=24,
    prompt=lognormal(48, sigma=0.6, low=8, high=256),
    output=uniform(16, 48),
    seed=7,
)


@pytest.mark.batchperf(rounds=3, batch_sizes=[4, 8], tolerance={"ttft_ms_p95": 30})
@pytest.mark.parametrize("strategy", ["static", "continuous"])
def test_chat(batchperf, strategy, batch_size):
    case = batchperf.run(CHAT, strategy, batch_size)
    # Every request generated all of its tokens (lengths do not depend on the vocabulary).
    expected = build(case.spec.workload, vocab_size=1000).output_tokens
    assert case.metrics["output_tokens"].median == expected
