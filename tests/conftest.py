import os
import shutil
from pathlib import Path

# The plugin imports these only when a batchperf test runs. pytester's in-process runs drop
# the modules an inner run imported, and a C extension (numpy) cannot be loaded twice in
# one process: so the outer process loads them once, first.
import numpy  # noqa: F401
import pytest
import scipy.special
import scipy.stats  # noqa: F401

import pytest_batchperf.report.html
import pytest_batchperf.session  # noqa: F401

pytest_plugins = ["pytester"]

HELPERS = Path(__file__).parent / "helpers"

# Synthetic models are cached across tests (and runs) rather than rewritten.
os.environ.setdefault("BATCHPERF_CACHE_DIR", str(Path.home() / ".cache" / "pytest-batchperf"))


@pytest.fixture
def pytester(pytester, monkeypatch):
    """pytester whose inner pytest runs look like a developer's: not an xdist worker
    (pytest-benchmark reads PYTEST_XDIST_WORKER and turns itself off) and not CI (where the
    gate requires a baseline); tests that want either set it themselves."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("CI", raising=False)
    return pytester


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
def sim_project(pytester):
    """A pytester project whose profile 'sim' is the SimulatedEngine (a fake, for
    plugin-logic tests only)."""

    def make(noise: float = 0.02, suite: str = SIM_SUITE, ini: str = ""):
        shutil.copy(HELPERS / "simulated_engine.py", pytester.path / "simulated_engine.py")
        pytester.makefile(".toml", pyproject=SIM_PROFILE.format(noise=noise) + ini)
        pytester.makepyfile(test_suite=suite)
        pytester.syspathinsert()
        return pytester

    return make
