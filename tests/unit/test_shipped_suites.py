"""The suites ship in the wheel, and a shipped case keeps the id it has in a clone."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_batchperf.fixture import SHIPPED_SUITES, case_id

ROOT = Path(__file__).resolve().parents[2]


def test_a_shipped_case_is_named_as_in_a_clone():
    node = SimpleNamespace(
        path=SHIPPED_SUITES / "test_batch_sweep.py",
        nodeid="../venv/lib/site-packages/pytest_batchperf/suites/test_batch_sweep.py::"
        "test_batch_sweep[B8-static]",
    )
    assert case_id(node) == "suites/test_batch_sweep.py::test_batch_sweep[B8-static]"
    other = SimpleNamespace(path=ROOT / "examples/test_chat.py", nodeid="examples/x.py::t[a]")
    assert case_id(other) == "examples/x.py::t[a]"


def test_the_wheel_ships_every_suite(tmp_path):
    pytest.importorskip("build")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "-o",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"pytest_batchperf/suites/{p.name}" for p in (ROOT / "suites").glob("*.py")}
    assert shipped and shipped <= names
