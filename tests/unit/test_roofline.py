"""The decode roofline's arithmetic, on recorded figures."""

import pytest

from pytest_batchperf.measure.roofline import Roofline
from pytest_batchperf.models.shapes import shape

H200_GBS = 4800.0  # NVIDIA's datasheet figure for the H200's HBM3e


def test_8b_at_batch_1_moves_about_15_gb_per_step():
    r = Roofline(shape("8b"), H200_GBS)
    # 8.03 B parameters, the 0.53 B of the embedding table not read, bf16
    assert r.weights() == pytest.approx(2 * (8.03e9 - 128256 * 4096), rel=0.01)
    assert r.kv_per_token() == 2 * 32 * 8 * 128 * 2  # K and V, layers, KV heads, head dim, bf16
    step = r.step_s(batch=1, context=64)
    assert 1 / step == pytest.approx(320, rel=0.03)  # the bound on B=1 decode tokens/s


def test_kv_cache_reads_grow_with_batch_and_context():
    r = Roofline(shape("8b"), H200_GBS)
    assert r.bytes_per_step(128, 1000) - r.bytes_per_step(1, 1000) == pytest.approx(
        127 * 1000 * r.kv_per_token()
    )
    assert r.step_s(128, 64) > r.step_s(1, 64)


def test_fraction_of_the_roofline():
    r = Roofline(shape("8b"), H200_GBS)
    ideal_ms = r.step_s(1, 64) * 1e3
    assert r.fraction_pct(ideal_ms, 1, 64) == pytest.approx(100)
    assert r.fraction_pct(2 * ideal_ms, 1, 64) == pytest.approx(50)
    assert Roofline(shape("8b"), 2 * H200_GBS).fraction_pct(ideal_ms, 1, 64) == pytest.approx(50)
