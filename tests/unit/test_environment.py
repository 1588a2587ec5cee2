"""The hardware class names the machine (and how many GPUs the engine uses); what this job
was given of it goes into the environment."""

import shutil
import subprocess
import sys

import pytest

from pytest_batchperf.measure import environment, interference, nvml


def test_cpu_class_counts_the_machines_cores_not_this_jobs(monkeypatch):
    monkeypatch.setattr(environment, "cpu_model", lambda: "AMD EPYC 9B14")
    monkeypatch.setattr(environment.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(interference.os, "sched_getaffinity", lambda pid: {0})
    assert environment.hardware_class("cpu") == "cpu-amd-epyc-9b14-2c"
    assert environment.capture("cpu")["usable_cores"] == 1


@pytest.mark.skipif(not shutil.which("taskset"), reason="needs taskset")
def test_taskset_keeps_the_hardware_class():
    code = "from pytest_batchperf.measure import environment as e; print(e.hardware_class('cpu'))"
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    pinned = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True
    ).stdout
    assert plain and pinned == plain


def test_gpu_class_names_the_gpu_count(monkeypatch):
    info = {"gpu": "NVIDIA H200", "gpu_memory_mib": 143771}
    monkeypatch.setattr(nvml, "device_info", lambda gpus=(0,): info)
    assert environment.hardware_class("cuda", (0,)) == "nvidia-h200-140gb"
    assert environment.hardware_class("cuda", (0, 1)) == "2x-nvidia-h200-140gb"
    info = {"gpu": "NVIDIA H100 80GB HBM3", "gpu_memory_mib": 81559}
    monkeypatch.setattr(nvml, "device_info", lambda gpus=(0,): info)
    assert environment.hardware_class("cuda") == "nvidia-h100-80gb-hbm3"


def test_engine_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr(nvml, "count", lambda: 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert nvml.engine_gpus(2) == (2, 3)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert nvml.engine_gpus(1) == (0,)


def test_cgroup_quota_caps_usable_cores(monkeypatch, tmp_path):
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    real = interference.Path

    monkeypatch.setattr(
        interference, "Path", lambda p: quota if p == "/sys/fs/cgroup/cpu.max" else real(p)
    )
    monkeypatch.setattr(interference.os, "sched_getaffinity", lambda pid: {0, 1})
    assert interference.usable_cores() == 1.5
