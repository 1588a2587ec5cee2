"""GPU readings of a two-GPU engine on a simulated NVML (no GPU here): each GPU's peak memory
and energy per token beside their sums, and only the sums for a one-GPU engine."""

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_batchperf.judge.catalog import lookup
from pytest_batchperf.judge.results import RunResults
from pytest_batchperf.measure import nvml
from pytest_batchperf.measure.sampling import ResourceSampler
from pytest_batchperf.report.html import render

MIB = 1 << 20
BASELINE = Path(__file__).parents[2] / "baselines/nvidia-h100-80gb-hbm3/llama-cpp-cuda-1b.json"


class TwoGPUs:
    """The part of pynvml the sampler calls; memory in bytes, energy in millijoules."""

    NVML_CLOCK_SM = 0

    def __init__(self):
        self.used = {0: 1000 * MIB, 1: 3000 * MIB}
        self.energy = {0: 0.0, 1: 0.0}

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=self.used[h])

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        raise RuntimeError("not attributable in this container")  # device-wide readings then

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=50)

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        return self.energy[h]

    def nvmlDeviceGetClockInfo(self, h, kind):
        return 1980

    nvmlDeviceGetMaxClockInfo = nvmlDeviceGetClockInfo


@pytest.fixture
def gpus(monkeypatch):
    fake = TwoGPUs()
    monkeypatch.setattr(nvml, "_nvml", lambda: fake)
    return fake


def test_each_gpu_beside_the_sum(gpus):
    sampler = ResourceSampler(lambda: [os.getpid()], gpus=(0, 1), interval_s=0)
    with sampler:
        gpus.used[1] = 5000 * MIB  # GPU 1 peaks during the round
        gpus.energy = {0: 2000.0, 1: 6000.0}
    got = sampler.metrics(output_tokens=4)
    assert got["peak_gpu_mem_mib"] == 6000  # the peak of the sum
    assert (got["peak_gpu_mem_mib_gpu0"], got["peak_gpu_mem_mib_gpu1"]) == (1000, 5000)
    assert (got["energy_j_per_tok_gpu0"], got["energy_j_per_tok_gpu1"]) == (0.5, 1.5)
    assert got["energy_j_per_tok"] == 2.0


def test_one_gpu_reports_only_the_totals(gpus):
    sampler = ResourceSampler(lambda: [os.getpid()], gpus=(1,), interval_s=0)
    with sampler:
        gpus.energy = {0: 0.0, 1: 4000.0}
    got = sampler.metrics(output_tokens=4)
    assert got["peak_gpu_mem_mib"] == 3000 and got["energy_j_per_tok"] == 1.0
    assert not [k for k in got if "_gpu" in k and k[-1].isdigit()]


def test_per_gpu_metrics_are_known_with_their_gpu_in_the_label():
    m = lookup("peak_gpu_mem_mib_gpu1")
    assert m is not None and m.label == "peak GPU memory (GPU 1)" and m.unit == "MiB"
    assert lookup("energy_j_per_tok_gpu0").label == "energy per output token (GPU 0)"
    assert lookup("ttft_ms_p50_gpu0") is None


def test_the_report_lists_each_gpu_beside_the_sum(gpus):
    sampler = ResourceSampler(lambda: [os.getpid()], gpus=(0, 1), interval_s=0)
    with sampler:
        gpus.energy = {0: 1000.0, 1: 1000.0}
    measured = sampler.metrics(output_tokens=4)
    data = json.loads(BASELINE.read_text())
    case = next(iter(data["cases"].values()))
    for name, value in measured.items():
        case["metrics"][name] = {"direction": "down", "rounds": [[value]], "unit": "x"}
    html = render(RunResults.from_dict(data))
    for name in ("peak_gpu_mem_mib", "peak_gpu_mem_mib_gpu0", "peak_gpu_mem_mib_gpu1"):
        assert f"<td>{name} <span" in html
    assert "energy_j_per_tok_gpu1" in html
