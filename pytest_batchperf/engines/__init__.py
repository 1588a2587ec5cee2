"""Engine adapters. ``load`` builds one in this process; ``start`` isolates it in a child."""

from __future__ import annotations

import importlib
import os

from ..profiles import Profile
from .base import Engine, EngineCrashed, EngineError, EngineUnavailable, OutOfMemory  # noqa: F401

# Imported lazily: each adapter imports its engine package, which may not be installed.
_ADAPTERS = {
    "llama-cpp": "pytest_batchperf.engines.llama_cpp:LlamaCppEngine",
    "vllm": "pytest_batchperf.engines.vllm_engine:VLLMEngine",
    "openai-http": "pytest_batchperf.engines.openai_http:OpenAIHTTPEngine",
    "transformers": "pytest_batchperf.engines.transformers_engine:TransformersEngine",
}


def load(profile: Profile) -> Engine:
    """Build the profile's engine in this process."""
    for key, value in profile.env.items():
        os.environ.setdefault(key, value)
    target = _ADAPTERS.get(profile.engine, profile.engine)
    module, _, cls = target.partition(":")
    if not cls:
        raise EngineError(f"profile {profile.name!r}: unknown engine {profile.engine!r}")
    try:
        adapter = getattr(importlib.import_module(module), cls)
    except AttributeError:
        raise EngineError(f"profile {profile.name!r}: {module} has no engine class {cls!r}") from None
    except ModuleNotFoundError as exc:
        if profile.engine not in _ADAPTERS:
            raise EngineError(f"profile {profile.name!r}: cannot import {module}: {exc}") from None
        raise EngineUnavailable(
            f"engine {profile.engine!r} needs the Python package {exc.name!r}: "
            f"pip install 'pytest-batchperf[{profile.engine.split('-')[0]}]'"
        ) from None
    return adapter(profile)


def start(profile: Profile, timeout_s: float | None = None) -> Engine:
    """The profile's engine, in a child process unless the profile says isolate = false."""
    if not profile.isolate:
        return load(profile)
    from .isolated import IsolatedEngine

    return IsolatedEngine(profile, timeout_s or profile.timeout_s)
