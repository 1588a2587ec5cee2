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
