"""The engine's own process: builds the adapter and answers rounds over a socket.

Started by ``engines.isolated`` as ``python -c BOOT FD PATHS``: the interpreter may be
another virtual environment's (the profile's ``python`` knob), which then needs only this
package's sources (put on its path by the parent) and the engine's own packages. Messages
are pickled over a ``multiprocessing.connection.Connection``: ("run", workload, strategy,
batch_size) -> ("ok", RoundTrace) | ("error", kind, message); ("close",) ends it.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import os
import signal
import sys
import traceback
from multiprocessing.connection import Connection

from . import base
from .base import FEATURES, EngineError, EngineSpec

ERRORS = {
    cls.__name__: cls
    for cls in (base.EngineError, base.EngineUnavailable, base.OutOfMemory, base.EngineCrashed)
}

# Run by the new interpreter: put the parent's chosen paths first, then serve.
BOOT = (
    "import json, sys; sys.path[:0] = json.loads(sys.argv[2]); "
    "from pytest_batchperf.engines.child import serve; serve(int(sys.argv[1]))"
)


def _error(exc: BaseException) -> tuple[str, str, str]:
    name = type(exc).__name__ if type(exc).__name__ in ERRORS else "EngineError"
    message = (
        str(exc)
        if isinstance(exc, EngineError)
        else (f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")
    )
    return ("error", name, message)


def _end_group(signum: int, frame: object) -> None:
    # This process leads its own group: an engine's workers (vLLM's engine core) go too.
    os.killpg(0, signal.SIGKILL)


def import_engine_package(engine: str) -> None:
    """A built-in engine's package, before anything of ours imports numpy: with numpy
    loaded first, llama.cpp's CUDA build segfaulted loading the model (numpy 2.5,
    docs/results/llama-cpp-cuda.md). A failure is left for the adapter to report."""
    from . import BUILTIN

    builtin = BUILTIN.get(engine)
    if builtin is not None:
        with contextlib.suppress(Exception):
            importlib.import_module(builtin.package)


def serve(fd: int) -> None:
    faulthandler.enable()  # a crash in native code leaves its Python stack in the engine's log
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, _end_group)  # the parent died, or stops us at once
    conn = Connection(fd)
    spec: EngineSpec = conn.recv()
    if spec.cpus:  # before the engine starts its threads, which inherit it
        os.sched_setaffinity(0, spec.cpus)
    import_engine_package(spec.engine)
    from . import load_in_process

    try:
        engine = load_in_process(spec)
        engine.warmup()
        conn.send(
            (
                "ready",
                {
                    "vocab_size": engine.vocab_size,
                    "describe": engine.describe(),
                    "features": {f: engine.supports(f) for f in FEATURES},
                    "python": sys.executable,
                    "version": ".".join(map(str, sys.version_info[:3])),
                },
            )
        )
    except BaseException as exc:
        conn.send(_error(exc))
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
        except BaseException as exc:
            conn.send(_error(exc))
    engine.close()
