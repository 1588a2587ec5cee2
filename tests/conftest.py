import os
import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

HERE = Path(__file__).parent

# Synthetic models are cached across tests (and runs) rather than rewritten.
os.environ.setdefault("BATCHPERF_CACHE_DIR", str(Path.home() / ".cache" / "pytest-batchperf"))

SIM_PROFILE = """
[tool.batchperf.profiles.sim]
engine = "simulated_engine:SimulatedEngine"
isolate = false
noise = {noise}
"""

SIM_SUITE = """
import pytest
from pytest_batchperf.workload import WorkloadSpec, fixed

WL = WorkloadSpec(num_requests=16, prompt=fixed(16), output=fixed(16), seed=3)

@pytest.mark.parametrize("strategy", ["static", "continuous"])
def test_sweep(batchperf, strategy, batch_size):
    batchperf.run(WL, strategy, batch_size)
"""


@pytest.fixture
def pytester(pytester, monkeypatch):
    """pytester, whose inner pytest runs never look like xdist workers: pytest-benchmark
    reads PYTEST_XDIST_WORKER from the environment and turns itself off, so under
    ``pytest -n`` the inner runs would differ from a plain run."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    return pytester


@pytest.fixture
def sim_project(pytester):
    """A pytester project whose profile 'sim' is the SimulatedEngine (a fake, for
    plugin-logic tests only)."""

    def make(noise: float = 0.02, suite: str = SIM_SUITE, ini: str = ""):
        shutil.copy(HERE / "simulated_engine.py", pytester.path / "simulated_engine.py")
        pytester.makefile(".toml", pyproject=SIM_PROFILE.format(noise=noise) + ini)
        pytester.makepyfile(test_suite=suite)
        pytester.syspathinsert()
        return pytester

    return make


def run_sim(pytester, *args):
    return pytester.runpytest(
        "-p", "no:cacheprovider", "--batchperf-profile", "sim", "--batchperf-batch-sizes", "2,8",
        "--benchmark-disable", *args)
