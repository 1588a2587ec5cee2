"""Engine adapters. ``load`` builds one in this process; ``start`` gives it a process of its own."""

from __future__ import annotations

import importlib
import os

from .base import Engine, EngineCrashed, EngineError, EngineSpec, EngineUnavailable, OutOfMemory

__all__ = [
    "ADAPTERS",
    "PACKAGES",
    "Engine",
    "EngineCrashed",
    "EngineError",
    "EngineSpec",
    "EngineUnavailable",
    "OutOfMemory",
    "load",
    "start",
]

# Imported lazily: each adapter imports its engine package, which may not be installed.
ADAPTERS = {
    "llama-cpp": "pytest_batchperf.engines.llama_cpp:LlamaCppEngine",
    "vllm": "pytest_batchperf.engines.vllm_engine:VLLMEngine",
    "openai-http": "pytest_batchperf.engines.openai_http:OpenAIHTTPEngine",
    "transformers": "pytest_batchperf.engines.transformers_engine:TransformersEngine",
}
# The package each built-in engine needs, and the extra that installs it.
PACKAGES = {
    "llama-cpp": ("llama_cpp", "llama"),
    "vllm": ("vllm", "vllm"),
    "openai-http": ("httpx", "openai-http"),
    "transformers": ("transformers", "transformers"),
}


def load(spec: EngineSpec) -> Engine:
    """Build the spec's engine in this process."""
    for key, value in spec.env.items():
        os.environ.setdefault(key, value)
    target = ADAPTERS.get(spec.engine, spec.engine)
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
        if spec.engine not in ADAPTERS:
            raise EngineError(f"profile {spec.profile!r}: cannot import {module}: {exc}") from None
        package, extra = PACKAGES[spec.engine]
        raise EngineUnavailable(
            f"engine {spec.engine!r} needs the Python package {exc.name or package!r}: "
            f"pip install 'pytest-batchperf[{extra}]'"
        ) from None
    return adapter(spec)


def start(
    spec: EngineSpec, timeout_s: float, isolate: bool = True, python: str | None = None
) -> Engine:
    """The spec's engine, in a process of its own unless ``isolate`` is false."""
    if not isolate:
        return load(spec)
    from .isolated import IsolatedEngine

    return IsolatedEngine(spec, timeout_s, python)
