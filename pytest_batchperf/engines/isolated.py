"""An engine in a process of its own, so that a crash or a hang fails one case, not the run,
and so that every run of a case can be a fresh process (the gate's unit of evidence).

The process (``engines.child``) may run another interpreter: the profile's ``python`` knob
names one, for instance a virtual environment holding another vLLM or llama-cpp-python,
so that two engine versions can be compared in one job. It then sees this package's
sources through a private directory on its path, and its own site-packages, never ours.
A round that outlasts the timeout kills the process (a hang); a process that dies
mid-round (a crash, a kill, the OOM killer) is reported as EngineCrashed, with the last
lines of its log. Either way the next case starts a fresh one.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import socket
import sys
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ..measure.trace import RoundTrace
from ..workload.spec import Workload
from ..workload.strategies import Strategy
from .base import Engine, EngineCrashed, EngineError, EngineSpec
from .child import BOOT, ERRORS
from .process import ChildProcess

PACKAGE = Path(__file__).resolve().parents[1]


def same_python(python: str | None) -> bool:
    return python is None or os.path.realpath(python) == os.path.realpath(sys.executable)


@functools.cache
def _shim() -> str:
    """A directory holding only this package: another interpreter imports it from there,
    and nothing else of this environment."""
    d = tempfile.mkdtemp(prefix="batchperf-pkg-")
    os.symlink(PACKAGE, os.path.join(d, PACKAGE.name))
    atexit.register(shutil.rmtree, d, True)
    return d


def child_path(python: str | None) -> list[str]:
    """The sys.path entries the engine's process puts first: ours for this interpreter (as
    multiprocessing's spawn does); for another one, this package and the project's own
    directories, but none of this environment's installed packages."""
    paths = [p or os.getcwd() for p in sys.path]
    if same_python(python):
        return paths
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    own = [p for p in paths if not any(os.path.realpath(p).startswith(x) for x in prefixes)]
    return [_shim(), *own]


class IsolatedEngine(Engine):
    def __init__(self, spec: EngineSpec, timeout_s: float, python: str | None = None):
        super().__init__(spec)
        self.name = spec.engine
        self.timeout_s = timeout_s
        self.python = python or sys.executable
        self._proc: ChildProcess | None = None
        self._conn: Connection | None = None
        self._info: dict[str, Any] = {}
        self._busy = False  # a round was sent and its answer not yet received
        self._start()

    def _start(self) -> None:
        mine, theirs = socket.socketpair()
        env = {**self.spec.env, **os.environ}  # a variable the user set wins
        self._proc = ChildProcess(
            [self.python, "-c", BOOT, str(theirs.fileno()), json.dumps(child_path(self.python))],
            env=env,
            what="engine",
            pass_fds=[theirs.fileno()],
        )
        try:
            self._proc.start()
        finally:
            theirs.close()
        self._conn = Connection(mine.detach())
        self._conn.send(self.spec)
        self._info = self._receive("load the engine")

    def _receive(self, doing: str) -> Any:
        assert self._conn is not None and self._proc is not None
        try:
            ready = self._conn.poll(self.timeout_s)
        except (EOFError, OSError):
            ready = True
        if not ready:
            self._kill()
            raise EngineError(
                f"engine did not {doing} within {self.timeout_s:g}s (hung?); it was killed "
                "and is restarted for the next case"
            )
        try:
            msg = self._conn.recv()
        except (EOFError, OSError):
            proc = self._proc
            proc.settle(5)
            message = proc.explain(
                f"engine process died while trying to {doing}; it is restarted for the next case"
            )
            self._kill()
            raise EngineCrashed(message) from None
        if msg[0] == "error":
            raise ERRORS.get(msg[1], EngineError)(msg[2])
        return msg[1]

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.stop(grace_s=0)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    @property
    def vocab_size(self) -> int:
        return int(self._info["vocab_size"])

    @property
    def process(self) -> dict[str, str]:
        """The interpreter the engine runs in, for the environment record."""
        return {
            "python": self._info.get("python", self.python),
            "python_version": self._info.get("version", ""),
        }

    def pids(self) -> list[int]:
        pid = self._proc.pid if self._proc is not None else None
        return [pid] if pid is not None else []

    def describe(self) -> dict:
        return dict(self._info.get("describe", {}))

    def supports(self, feature: str) -> bool:
        return bool(self._info.get("features", {}).get(feature, False))

    def run_round(self, workload: Workload, strategy: Strategy, batch_size: int) -> RoundTrace:
        if self._proc is not None and not self._proc.alive():
            # Died between rounds: a run is one engine process, so never a silent restart.
            message = self._proc.explain(
                "engine process died between rounds; it is restarted for the next case"
            )
            self._kill()
            raise EngineCrashed(message)
        if self._proc is None:
            self._start()
        assert self._conn is not None
        self._busy = True  # stays True if Ctrl-C interrupts the wait
        try:
            self._conn.send(("run", workload, strategy, batch_size))
        except (OSError, EOFError):
            pass  # the process died since the check: _receive tells how
        try:
            trace = self._receive(f"finish a round ({strategy.value}, batch {batch_size})")
        except EngineError:
            self._busy = False
            raise
        self._busy = False
        return trace

    def close(self) -> None:
        if self._busy or self._conn is None:  # interrupted mid-round: no point in waiting
            self._kill()
            return
        try:
            self._conn.send(("close",))
        except (OSError, EOFError):
            pass
        if self._proc is not None:
            self._proc.settle(30)
            self._proc.remove_log()
        self._kill()
