"""Run an engine in a child process, so that a crash or a hang fails one case, not the run.

The child builds the engine with ``load`` and answers requests over a pipe. A round that
outlasts the timeout kills the child (a hang); a child that dies mid-round (a crash, a
kill, the OOM killer) is reported as EngineCrashed. Either way the next case starts a
fresh child. Ctrl-C reaches the parent only: the child ignores SIGINT and is ended by it.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import traceback

from ..profiles import Profile
from ..strategies import Strategy
from ..workload import Workload
from . import base
from .base import Engine, EngineCrashed, EngineError, RoundTrace

_ERRORS = {cls.__name__: cls for cls in (base.EngineError, base.EngineUnavailable,
                                         base.OutOfMemory, base.EngineCrashed)}


def _serve(conn, profile: Profile) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from . import load

    def send_error(exc: BaseException) -> None:
        name = type(exc).__name__ if type(exc).__name__ in _ERRORS else "EngineError"
        message = str(exc) if isinstance(exc, EngineError) else (
            f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")
        conn.send(("error", name, message))

    try:
        engine = load(profile)
        engine.warmup()
        conn.send(("ready", {"vocab_size": engine.vocab_size, "describe": engine.describe(),
                             "features": {f: engine.supports(f) for f in ("priority", "prefix_cache")}}))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        send_error(exc)
        return
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            break
        if msg[0] == "close":
            break
        try:
            conn.send(("ok", engine.run_round(*msg[1:])))
        except BaseException as exc:  # noqa: BLE001
            send_error(exc)
    engine.close()


class IsolatedEngine(Engine):
    def __init__(self, profile: Profile, timeout_s: float):
        self.profile = profile
        self.name = profile.engine
        self.device = profile.device
        self.timeout_s = timeout_s
        self._proc = None
        self._conn = None
        self._info: dict = {}
        self._busy = False  # a round was sent and its answer not yet received
        self._start()

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, self.profile), daemon=False,
                                 name=f"batchperf-{self.profile.engine}")
        self._proc.start()
        child.close()
        self._info = self._receive("load the engine")

    def _receive(self, doing: str):
        try:
            ready = self._conn.poll(self.timeout_s)
        except (EOFError, OSError):
            ready = True
        if not ready:
            self._kill()
            raise EngineError(
                f"engine did not {doing} within {self.timeout_s:g}s (hung?); it was killed "
                "and is restarted for the next case")
        try:
            msg = self._conn.recv()
        except (EOFError, OSError):
            self._proc.join(5)
            code = self._proc.exitcode
            self._kill()
            how = f"killed by signal {-code}" if code and code < 0 else f"exit code {code}"
            raise EngineCrashed(
                f"engine process died while trying to {doing} ({how}); it is restarted for "
                "the next case") from None
        if msg[0] == "error":
            raise _ERRORS.get(msg[1], EngineError)(msg[2])
        return msg[1]

    def _ensure(self) -> None:
        if self._proc is None or not self._proc.is_alive():
            self._kill()
            self._start()

    def _kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join(10)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    @property
    def vocab_size(self) -> int:
        return self._info["vocab_size"]

    def pids(self) -> list[int]:
        return [self._proc.pid] if self._proc is not None else []

    def describe(self) -> dict:
        return self._info.get("describe", {})

    def supports(self, feature: str) -> bool:
        return self._info.get("features", {}).get(feature, False)

    def run_round(self, workload: Workload, strategy: Strategy, batch_size: int) -> RoundTrace:
        self._ensure()
        self._busy = True  # stays True if Ctrl-C interrupts the wait
        try:
            self._conn.send(("run", workload, strategy, batch_size))
        except (OSError, EOFError):
            pass  # the child died since _ensure: _receive tells how
        try:
            trace = self._receive(f"finish a round ({strategy.value}, batch {batch_size})")
        except EngineError:
            self._busy = False
            raise
        self._busy = False
        return trace

    def close(self) -> None:
        if self._busy:  # interrupted mid-round (Ctrl-C): waiting for the round is pointless
            self._kill()
        if self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(("close",))
                self._proc.join(30)
            except (OSError, EOFError):
                pass
        self._kill()
