"""A process the plugin starts: an engine's own process, or a server an engine launches.

Its output goes to a log file so that every failure message can quote its last lines: a
process that exits at once, never answers, or dies mid-round says why. It runs in a
session of its own (Ctrl-C at the terminal reaches pytest only; stop() ends the whole
tree, such as vLLM's engine core or a server's workers) and dies with its parent.
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


class PortInUse(EngineError):
    """The port a server was to listen on is taken."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the server binds it a moment later)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_taken(host: str, port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        return s.connect_ex((host, port)) == 0


# Loaded here, not in the forked child: a child forked from a threaded parent must not
# take locks (dlopen does) before it execs.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    # A parent killed on a hang gets no cleanup; the kernel takes the child down with it.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ChildProcess:
    """One process, its log, and a readiness wait."""

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        what: str = "server",
        pass_fds: Sequence[int] = (),
    ):
        self.argv = [str(a) for a in argv]
        self.env = env
        self.what = what
        self.pass_fds = tuple(pass_fds)
        self.proc: subprocess.Popen | None = None
        fd, log = tempfile.mkstemp(prefix=f"batchperf-{what.replace(' ', '-')}-", suffix=".log")
        os.close(fd)
        self.log = Path(log)

    @property
    def name(self) -> str:
        return shlex.join(self.argv[:4]) + (" ..." if len(self.argv) > 4 else "")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        try:
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env if self.env is not None else None,
                    pass_fds=self.pass_fds,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 - it only calls prctl
                    start_new_session=True,
                )
        except FileNotFoundError:
            raise EngineError(
                f"cannot start {self.what} {self.name}: {self.argv[0]} not found (not on PATH?)"
            ) from None
        except OSError as exc:
            raise EngineError(
                f"cannot start {self.what} {self.name}: {exc.strerror or exc}"
            ) from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def last_lines(self, n: int = LOG_LINES) -> str:
        try:
            with open(self.log, errors="replace") as f:
                lines = [line.rstrip() for line in deque(f, n) if line.strip()]
        except OSError:
            return ""
        return "\n".join(lines)

    def exit_status(self) -> str:
        code = self.proc.poll() if self.proc is not None else None
        if code is None:
            return "still running"
        return f"killed by signal {-code}" if code < 0 else f"exit code {code}"

    def explain(self, what: str) -> str:
        """``what`` plus the process's exit status and its last log lines."""
        parts = [what]
        if self.proc is not None and self.proc.poll() is not None:
            parts[0] += f" ({self.what} {self.exit_status()})"
        tail = self.last_lines()
        if tail:
            parts.append(f"{self.what} log ({self.log}), last lines:\n{tail}")
        return "\n".join(parts)

    def wait_ready(self, probe: Callable[[], bool], timeout_s: float) -> None:
        """Poll ``probe`` until it returns True; fail early if the process exits."""
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while True:
            if not self.alive():
                raise EngineError(
                    self.explain(f"{self.what} {self.name} exited before it was ready")
                )
            if probe():
                return
            if time.monotonic() >= deadline:
                message = self.explain(
                    f"{self.what} {self.name} did not answer within "
                    f"{timeout_s:g}s (startup_timeout_s); it was stopped"
                )
                self.stop()
                raise EngineError(message)
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def settle(self, wait_s: float) -> None:
        """Give a process that is going down ``wait_s`` to exit, so that its exit status
        makes it into the message (a dropped connection often comes first)."""
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait_s)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after ``grace_s`` (0: at once), and
        wait until the group is gone, so that a fresh server finds its GPU memory free."""
        proc = self.proc
        if proc is None:
            return
        if grace_s > 0 and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace_s)
        # A leader that died (or was killed) leaves its workers running: vllm serve's engine
        # core holds the GPU memory the next server needs.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.05)

    def remove_log(self) -> None:
        with contextlib.suppress(OSError):
            self.log.unlink()
