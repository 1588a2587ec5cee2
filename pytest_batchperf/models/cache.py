"""Where synthetic models are written, keyed by shape and content hash."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path


def cache_dir() -> Path:
    root = os.environ.get("BATCHPERF_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pytest-batchperf"
    )
    return Path(root) / "models"


@contextlib.contextmanager
def lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached(target: Path, write: Callable[[Path], None]) -> Path:
    """Return ``target``, writing it first (to a temp name, then renamed) if absent.

    Several pytest-xdist workers may ask at once: a lock makes one write and the rest wait.
    """
    if target.exists():
        return target
    with lock(target):
        if not target.exists():
            tmp = target.with_name(target.name + ".partial")
            write(tmp)
            os.replace(tmp, target)
    return target
