"""Reports: results.json, summary.md and index.html, from one RunResults.

Each is written on its own (atomically), so one that fails (a full disk, a bad value in a
chart) loses none of the others; the caller gets the failures as one line each.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from ..atomic import write_atomic
from ..judge.results import RunResults
from .summary import markdown, terminal_lines

__all__ = ["markdown", "terminal_lines", "write_all", "write_json"]


def write_json(run: RunResults, path: Path) -> Path:
    write_atomic(path, json.dumps(run.to_dict(), indent=2, sort_keys=True, default=str) + "\n")
    return path


def _summary(run: RunResults, path: Path) -> Path:
    md = markdown(run)
    write_atomic(path, md)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a") as f:
            f.write(md + "\n")
    return path


def _html(run: RunResults, path: Path) -> Path:
    from .html import write_html

    return write_html(run, path)


WRITERS: tuple[tuple[str, Callable[[RunResults, Path], Path]], ...] = (
    ("results.json", write_json),
    ("summary.md", _summary),
    ("index.html", _html),
)


def write_all(run: RunResults, directory: Path) -> tuple[list[Path], list[str]]:
    """(files written, one line per file that could not be)."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return [], [f"{directory}: {exc.strerror or exc}"]
    written, errors = [], []
    for name, write in WRITERS:
        try:
            written.append(write(run, directory / name))
        except Exception as exc:
            errors.append(f"{directory / name}: {type(exc).__name__}: {exc}".splitlines()[0])
    return written, errors
