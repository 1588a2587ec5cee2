"""A baseline's history: the jobs whose runs it keeps, each with when it ran, the commit it
ran on and a digest of its setup.

A committed baseline is a rolling window of jobs (default 30): every save, and every passing
CI job that ``batchperf baseline append`` takes from its artifacts, adds one, and the oldest
drops out. The gate learns from the window how much whole jobs of this runner differ; the
reports draw each case's trend from it. A job of another setup (engine, packages, driver)
starts the history again (``same_setup``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# What makes two jobs one history: the same engine, packages, interpreter, CPU and GPU.
SETUP_KEYS = ("packages", "engine", "python", "cpu_isa", "cpu_uarch", "gpu", "driver")
# Where CI systems say which commit a job runs on.
COMMIT_VARIABLES = ("GITHUB_SHA", "CI_COMMIT_SHA", "BUILDKITE_COMMIT", "GIT_COMMIT")


@dataclass(frozen=True)
class Job:
    id: str
    created: str = ""  # ISO time the job started
    commit: str = ""  # where the job knew it
    setup: str = ""  # setup_digest of its environment

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Job:
        text = {k: str(d.get(k, "")) for k in ("created", "commit", "setup")}
        return cls(str(d["id"]), **text)


def same_setup(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two environments ran the same engine and packages (their jobs form one history)."""
    return all(a.get(k) == b.get(k) for k in SETUP_KEYS)


def setup_digest(environment: Mapping[str, Any]) -> str:
    """12 hex digits naming the setup of ``environment`` (``SETUP_KEYS``)."""
    text = json.dumps({k: environment.get(k) for k in SETUP_KEYS}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def current_commit(root: str | os.PathLike | None = None) -> str:
    """The commit this job runs on: the CI's variable, else ``git rev-parse HEAD`` in
    ``root``; empty where neither knows."""
    for name in COMMIT_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root or None,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def new_job(started: str, environment: Mapping[str, Any], root: Path | None = None) -> Job:
    """This job's record: an id unique across machines, its start, commit and setup."""
    stamp = "".join(ch for ch in started if ch.isdigit())[:14]
    return Job(
        f"{stamp}-{uuid.uuid4().hex[:6]}", started, current_commit(root), setup_digest(environment)
    )


def legacy_ids(count: int) -> tuple[str, ...]:
    """Ids for the last ``count`` jobs of a file that kept no job records (schema 2)."""
    return tuple(f"saved-{i}" for i in range(1, count + 1))


def window(ids: Sequence[str], new: str, keep: int) -> tuple[str, ...]:
    """A case's job ids with ``new`` appended, the last ``keep``."""
    return (*ids, new)[-keep:]
