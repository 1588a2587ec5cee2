"""A server the plugin starts itself: launch, readiness probe, log capture, stop.

Used by the ``openai-http`` engine when a profile names a server command rather than a
URL. The server's output goes to a log file so that every failure message can quote
its last lines: a server that exits at once, never answers, or dies mid-round says why.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from .base import EngineError

LOG_LINES = 12


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the server binds it a moment later)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# Loaded here, not in the forked child: a child forked from a threaded parent must not
# take locks (dlopen does) before it execs.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    # The engine may run in a child process that is killed on a hang (SIGKILL: no
    # cleanup runs); PR_SET_PDEATHSIG makes the kernel take the server down with it.
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ServerProcess:
    """One server process, its log, and a readiness probe."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None):
        self.argv = [str(a) for a in argv]
        self.env = env
        self.proc: subprocess.Popen | None = None
        self._log = Path(tempfile.mkstemp(prefix="batchperf-server-", suffix=".log")[1])

    @property
    def name(self) -> str:
        return shlex.join(self.argv[:4]) + (" ..." if len(self.argv) > 4 else "")

    def start(self) -> None:
        try:
            with open(self._log, "ab") as log:
                self.proc = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env={**os.environ, **(self.env or {})},
                    preexec_fn=_die_with_parent if _LIBC is not None else None,  # noqa: PLW1509
                    start_new_session=True)
        except OSError as exc:
            raise EngineError(f"cannot start server {self.name}: {exc.strerror or exc}") from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def last_lines(self, n: int = LOG_LINES) -> str:
        try:
            with open(self._log, errors="replace") as f:
                lines = [line.rstrip() for line in deque(f, n) if line.strip()]
        except OSError:
            return ""
        return "\n".join(lines)

    def explain(self, what: str) -> str:
        """``what`` plus the server's exit status and its last log lines."""
        parts = [what]
        if self.proc is not None and self.proc.poll() is not None:
            parts[0] += f" (server exited with code {self.proc.returncode})"
        tail = self.last_lines()
        if tail:
            parts.append(f"server log ({self._log}), last lines:\n{tail}")
        return "\n".join(parts)

    def wait_ready(self, probe: Callable[[], bool], timeout_s: float) -> None:
        """Poll ``probe`` until it returns True; fail early if the server exits."""
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while True:
            if not self.alive():
                raise EngineError(self.explain(f"server {self.name} exited before it was ready"))
            if probe():
                return
            if time.monotonic() >= deadline:
                message = self.explain(f"server {self.name} did not answer within {timeout_s:g}s "
                                       "(startup_timeout_s); it was stopped")
                self.stop()
                raise EngineError(message)
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def settle(self, wait_s: float) -> None:
        """Give a server that is going down ``wait_s`` to exit, so that its exit status
        makes it into the message (a dropped connection often comes first)."""
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait_s)

    def stop(self, grace_s: float = 10.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove_log(self) -> None:
        with contextlib.suppress(OSError):
            self._log.unlink()
