"""The real suites, as shipped, copied into a pytester project."""

from __future__ import annotations

import shutil
from pathlib import Path

SUITES = Path(__file__).resolve().parents[2] / "suites"


def copy_suites(project: Path, *tests: str) -> Path:
    """``project``/suites with the package's own files and the test modules named."""
    out = project / "suites"
    out.mkdir(exist_ok=True)
    for name in ("__init__.py", "conftest.py", "workloads.py", *tests):
        shutil.copy(SUITES / name, out / name)
    return out
