"""The hardware class names the machine (CPU model, ISA level, microarchitecture and cores,
or how many GPUs the engine uses); what this job was given of it goes into the environment. Another class's
baseline is never compared."""

import shutil
import subprocess
import sys

import pytest

from pytest_batchperf.judge import baseline
from pytest_batchperf.judge.results import CaseResult, MetricRuns, RunResults
from pytest_batchperf.measure import environment, interference, nvml
from pytest_batchperf.options import Options, in_ci
from pytest_batchperf.session import BatchperfSession
from pytest_batchperf.workload import CaseSpec, Strategy, WorkloadSpec

AVX512_BF16 = {"avx", "avx2", "avx512f", "avx512vl", "avx512_vnni", "avx512_bf16"}
AVX2 = {"avx", "avx2", "fma"}


def _machine(monkeypatch, flags, model="AMD EPYC", cores=2, uarch="f25m17"):
    monkeypatch.setattr(environment, "cpu_model", lambda: model)
    monkeypatch.setattr(environment, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(environment, "cpu_uarch", lambda: uarch)
    monkeypatch.setattr(environment.os, "cpu_count", lambda: cores)


def test_cpu_class_counts_the_machines_cores_not_this_jobs(monkeypatch):
    _machine(monkeypatch, AVX512_BF16, "AMD EPYC 9B14")
    monkeypatch.setattr(interference.os, "sched_getaffinity", lambda pid: {0})
    assert environment.hardware_class("cpu") == "cpu-amd-epyc-9b14-avx512bf16-f25m17-2c"
    env = environment.capture("cpu")
    assert env["usable_cores"] == 1 and env["cpu_isa"] == "avx512bf16"
    assert env["cpu_uarch"] == "f25m17"


def test_one_model_name_with_and_without_avx512_is_two_classes(monkeypatch):
    _machine(monkeypatch, AVX512_BF16)
    fast = environment.hardware_class("cpu")
    _machine(monkeypatch, AVX2)
    assert (fast, environment.hardware_class("cpu")) == (
        "cpu-amd-epyc-avx512bf16-f25m17-2c",
        "cpu-amd-epyc-avx2-f25m17-2c",
    )


def test_two_generations_with_the_same_flags_are_two_classes(monkeypatch):
    """Zen 4 and Zen 5 both show AVX512-BF16 under one virtualised 'AMD EPYC': the family and
    model tell them apart."""
    _machine(monkeypatch, AVX512_BF16, uarch="f25m17")
    genoa = environment.hardware_class("cpu")
    _machine(monkeypatch, AVX512_BF16, uarch="f26m2")
    assert (genoa, environment.hardware_class("cpu")) == (
        "cpu-amd-epyc-avx512bf16-f25m17-2c",
        "cpu-amd-epyc-avx512bf16-f26m2-2c",
    )
    _machine(monkeypatch, AVX512_BF16, uarch="")  # not x86: no family to name
    assert environment.hardware_class("cpu") == "cpu-amd-epyc-avx512bf16-2c"


@pytest.mark.parametrize(
    "flags, level",
    [
        (AVX512_BF16, "avx512bf16"),
        ({"avx2", "avx512f", "avx512_vnni"}, "avx512vnni"),
        ({"avx2", "avx512f", "avx512bw"}, "avx512"),
        ({"avx2", "avx512_bf16"}, "avx2"),  # bf16 without avx512f is no AVX512 level
        ({"avx2", "avx_vnni"}, "avxvnni"),
        ({"avx2", "fma"}, "avx2"),
        ({"sse4_2", "avx"}, "noavx2"),
        (set(), "noavx2"),
    ],
)
def test_isa_level_is_the_highest_level_of_the_flags(flags, level):
    assert environment.isa_level(flags) == level


def test_cpu_flags_are_the_first_flags_line(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n"
        "vmx flags\t: ept\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
        "processor\t: 1\ncpu family\t: 26\nmodel\t\t: 2\nflags\t\t: fpu\n"
    )
    real = open
    monkeypatch.setattr(
        environment,
        "open",
        lambda p, *a, **k: real(cpuinfo if p == "/proc/cpuinfo" else p, *a, **k),
        raising=False,
    )
    assert environment.cpu_flags() == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert environment.cpu_isa() == "avx512bf16"
    assert (environment.cpu_model(), environment.cpu_uarch()) == ("AMD EPYC", "f25m17")
    cpuinfo.unlink()  # unreadable, or no x86 flags (aarch64): the machine's name
    monkeypatch.setattr(environment.platform, "machine", lambda: "aarch64")
    assert environment.cpu_flags() == frozenset()
    assert environment.cpu_isa() == "aarch64"
    assert environment.cpu_uarch() == ""


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


SIM = """
[tool.batchperf.profiles.sim]
engine = "simulated_engine:SimulatedEngine"
isolate = false
"""


@pytest.fixture
def saved_on_avx512(monkeypatch, tmp_path):
    """A project whose baseline of profile 'sim' was saved on an AVX512-BF16 'AMD EPYC'; the
    test then runs on an 'AMD EPYC' without AVX512."""
    (tmp_path / "pyproject.toml").write_text(SIM)
    _machine(monkeypatch, AVX512_BF16)
    case = CaseResult(
        "test_suite.py::t[B8]",
        "t",
        CaseSpec(WorkloadSpec(num_requests=16, seed=3), Strategy.STATIC, 8),
        {"output_tok_s": MetricRuns.build("output_tok_s", [[100.0], [99.0]])},
    )
    fast = environment.hardware_class("cpu")
    run = RunResults("sim", fast, {"cpu_isa": "avx512bf16"}, {case.case_id: case})
    baseline.save(baseline.baseline_path(tmp_path / "baselines", fast, "sim"), run)
    _machine(monkeypatch, AVX2)
    monkeypatch.delenv("CI", raising=False)
    return tmp_path


def _session(root):
    options = Options(profile="sim", baseline_dir=root / "baselines", require_baseline=in_ci())
    return BatchperfSession(options, root)


def test_another_isa_levels_baseline_is_not_used_and_is_named(saved_on_avx512):
    s = _session(saved_on_avx512)
    s.prepare()
    assert s.ready().hardware_class == "cpu-amd-epyc-avx2-f25m17-2c"
    assert s.ready().baseline is None  # its cases are new
    assert s.notices() == (
        "no baseline for class cpu-amd-epyc-avx2-f25m17-2c; baselines of this profile exist "
        "for: cpu-amd-epyc-avx512bf16-f25m17-2c",
    )


def test_under_ci_another_isa_levels_baseline_fails_in_one_line(saved_on_avx512, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(baseline.BaselineError) as exc:
        _session(saved_on_avx512).prepare()
    message = str(exc.value)
    assert "\n" not in message
    assert "hardware class 'cpu-amd-epyc-avx2-f25m17-2c'" in message
    assert "baselines exist for: cpu-amd-epyc-avx512bf16-f25m17-2c" in message
