"""Engine adapters: ``load_in_process`` builds one in this process, ``start`` gives it a
process of its own."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

from .base import Engine, EngineCrashed, EngineError, EngineSpec, EngineUnavailable, OutOfMemory
from .config import Knobs, LlamaCppKnobs, OpenAIHTTPKnobs, TransformersKnobs, VLLMKnobs

__all__ = [
    "BUILTIN",
    "BuiltinEngine",
    "Engine",
    "EngineCrashed",
    "EngineError",
    "EngineSpec",
    "EngineUnavailable",
    "OutOfMemory",
    "load_in_process",
    "start",
]


@dataclass(frozen=True)
class BuiltinEngine:
    """A built-in engine: everything a new one needs, in one entry."""

    adapter: str  # "module:Class", imported lazily: it imports the engine's package
    package: str  # the Python package it needs ...
    extra: str  # ... and the pytest-batchperf extra that installs it
    knobs: type[Knobs]  # its typed knobs, checked before any engine loads
    # Computes in its own process on the host CPU: pinned apart from the driver there
    # (a server's client and server share the process tree, and are not).
    computes_in_process: bool = False


BUILTIN: dict[str, BuiltinEngine] = {
    "llama-cpp": BuiltinEngine(
        "pytest_batchperf.engines.llama_cpp:LlamaCppEngine",
        "llama_cpp",
        "llama",
        LlamaCppKnobs,
        computes_in_process=True,
    ),
    "vllm": BuiltinEngine(
        "pytest_batchperf.engines.vllm_engine:VLLMEngine", "vllm", "vllm", VLLMKnobs
    ),
    "openai-http": BuiltinEngine(
        "pytest_batchperf.engines.openai_http:OpenAIHTTPEngine",
        "httpx",
        "openai-http",
        OpenAIHTTPKnobs,
    ),
    "transformers": BuiltinEngine(
        "pytest_batchperf.engines.transformers_engine:TransformersEngine",
        "transformers",
        "transformers",
        TransformersKnobs,
        computes_in_process=True,
    ),
}


def load_in_process(spec: EngineSpec) -> Engine:
    """Build the spec's engine in this process."""
    for key, value in spec.env.items():
        os.environ.setdefault(key, value)
    builtin = BUILTIN.get(spec.engine)
    target = builtin.adapter if builtin else spec.engine
    module, _, cls = target.partition(":")
    if not cls:
        raise EngineError(f"profile {spec.profile!r}: unknown engine {spec.engine!r}")
    try:
        adapter = getattr(importlib.import_module(module), cls)
    except AttributeError:
        raise EngineError(
            f"profile {spec.profile!r}: {module} has no engine class {cls!r}"
        ) from None
    except ModuleNotFoundError as exc:
        if builtin is None:
            raise EngineError(f"profile {spec.profile!r}: cannot import {module}: {exc}") from None
        raise EngineUnavailable(
            f"engine {spec.engine!r} needs the Python package {exc.name or builtin.package!r}: "
            f"pip install 'pytest-batchperf[{builtin.extra}]'"
        ) from None
    return adapter(spec)


def start(
    spec: EngineSpec, timeout_s: float, isolate: bool = True, python: str | None = None
) -> Engine:
    """The spec's engine, in a process of its own unless ``isolate`` is false."""
    if not isolate:
        return load_in_process(spec)
    from .isolated import IsolatedEngine

    return IsolatedEngine(spec, timeout_s, python)
