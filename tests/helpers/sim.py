"""Running the fake engine's pytester project (conftest's ``sim_project``)."""

from __future__ import annotations

import json
from typing import Any


def run_sim(pytester: Any, *args: str) -> Any:
    return pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--batchperf-profile",
        "sim",
        "--batchperf-batch-sizes",
        "2,8",
        "--benchmark-disable",
        *args,
    )


def results(pytester: Any) -> dict:
    return json.loads((pytester.path / "reports" / "results.json").read_text())


def baseline_files(pytester: Any, profile: str = "sim") -> list:
    return list((pytester.path / "baselines").rglob(f"{profile}.json"))


def save_jobs(pytester: Any, *args: str, jobs: int = 3, run: Any = run_sim) -> Any:
    """A baseline saved in ``jobs`` save jobs (fresh pytest processes of one setup), so that
    the gate knows the variance between jobs instead of the machine kind's default."""
    for _ in range(jobs):
        result = run(pytester, "--batchperf-save", *args)
    return result
