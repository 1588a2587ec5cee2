"""Reports: results.json, summary.md and index.html, from one RunResults."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..atomic import write_atomic
from ..results import RunResults
from .summary import markdown, terminal_lines  # noqa: F401


def write_json(run: RunResults, path: Path) -> Path:
    write_atomic(path, json.dumps(run.to_dict(), indent=2, sort_keys=True, default=str) + "\n")
    return path


def write_all(run: RunResults, directory: Path) -> list[Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = [write_json(run, directory / "results.json")]
    md = markdown(run)
    write_atomic(directory / "summary.md", md)
    written.append(directory / "summary.md")
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a") as f:
            f.write(md + "\n")
    try:
        from .html import write_html
    except ImportError:  # the HTML report is optional until its module lands
        return written
    written.append(write_html(run, directory / "index.html"))
    return written
