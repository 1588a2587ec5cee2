"""Each built-in engine's knobs as a typed config that refuses unknown keys.

A typo must not silently benchmark the defaults, so a profile's knobs are checked here,
in the parent process and before any engine loads: one line names the unknown knob and
lists the known ones. These classes import no engine package.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


class KnobError(ValueError):
    """A profile's knobs do not fit its engine; str() is one line."""


_TYPES = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "list": lambda v: isinstance(v, (list, tuple)),
    "dict": lambda v: isinstance(v, dict),
}


def _accepts(annotation: str, value: Any) -> bool:
    """Whether ``value`` fits a field annotated ``annotation`` ("int | None", "list | str")."""
    kinds = [k.strip() for k in annotation.split("|")]
    return (value is None and "None" in kinds) or any(
        _TYPES[k](value) for k in kinds if k in _TYPES
    )


class Knobs:
    """Base of the typed configs: ``parse`` checks names and types."""

    engine: ClassVar[str] = ""
    MODEL_FORMAT: ClassVar[str] = ""  # "gguf", "hf" or "" (the model name is left as it is)

    @classmethod
    def parse(cls, knobs: Mapping[str, Any], where: str) -> Knobs:
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(knobs) - set(fields))
        if unknown:
            raise KnobError(
                f"{where}: unknown {cls.engine} knob(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(fields))}"
            )
        for name, value in knobs.items():
            annotation = str(fields[name].type)
            if not _accepts(annotation, value):
                raise KnobError(
                    f"{where}: {cls.engine} knob {name} must be {annotation}, got {value!r}"
                )
        config = cls(**dict(knobs))
        config.check(where)
        return config

    def check(self, where: str) -> None:
        """Relations between knobs; raise KnobError."""

    def gpus(self) -> int:
        """GPUs one engine of this config computes on."""
        return 1

    def describe(self) -> dict[str, Any]:
        """The knobs that differ from their defaults, for the environment record."""
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            default = (
                f.default
                if f.default is not dataclasses.MISSING
                else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            )
            value = getattr(self, f.name)
            if value != default:
                out[f.name] = value
        return out


def _fraction(value: float, name: str, where: str) -> None:
    if value < 0:
        raise KnobError(f"{where}: knob {name} must be >= 0, got {value}")


@dataclass(frozen=True)
class LlamaCppKnobs(Knobs):
    engine: ClassVar[str] = "llama-cpp"
    MODEL_FORMAT: ClassVar[str] = "gguf"

    n_threads: int | None = None  # default: the usable cores less one (device.compute_threads)
    n_threads_batch: int | None = None
    n_gpu_layers: int = 0
    n_ctx: int = 4096
    n_batch: int = 512
    n_ubatch: int | None = None
    n_seq_max: int = 64
    flash_attn: bool | None = None
    use_mmap: bool | None = None
    use_mlock: bool | None = None
    verbose: bool = False
    # Greedy sampling inside llama.cpp's graph (its backend sampling), on the GPU where the
    # model is: no vocabulary-wide logits reach the host, and no argmax runs in numpy.
    backend_sampling: bool = False
    # Busy-waits this fraction of each llama_decode call's own duration after it: a real,
    # proportional slowdown for measuring the gate's power.
    slowdown: float = 0.0

    def check(self, where: str) -> None:
        _fraction(self.slowdown, "slowdown", where)


@dataclass(frozen=True)
class VLLMKnobs(Knobs):
    engine: ClassVar[str] = "vllm"
    MODEL_FORMAT: ClassVar[str] = "hf"
    #: passed to ``vllm.LLM`` / ``AsyncEngineArgs`` when set
    LLM_ARGS: ClassVar[tuple[str, ...]] = (
        "gpu_memory_utilization",
        "max_model_len",
        "max_num_seqs",
        "max_num_batched_tokens",
        "enable_prefix_caching",
        "enforce_eager",
        "dtype",
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "distributed_executor_backend",
        "scheduling_policy",
        "seed",
        "kv_cache_dtype",
        "block_size",
        "async_scheduling",
        "compilation_config",
    )

    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    enable_prefix_caching: bool | None = None
    enforce_eager: bool | None = None
    dtype: str | None = None
    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int | None = None
    distributed_executor_backend: str | None = None
    scheduling_policy: str | None = None
    seed: int | None = None
    kv_cache_dtype: str | None = None
    block_size: int | None = None
    async_scheduling: bool | None = None
    compilation_config: int | dict | None = None
    api: str = "offline"  # or "async": AsyncLLM, each request streamed on its own task
    multiprocessing: bool = True  # false: the engine core runs in the engine's process
    slowdown: float = 0.0
    slowdown_on: str = "host"  # or "gpu": a spin kernel before each step
    verbose: bool = False

    def check(self, where: str) -> None:
        if self.api not in ("offline", "async"):
            raise KnobError(
                f"{where}: vllm knob api must be 'offline' or 'async', not {self.api!r}"
            )
        if self.slowdown_on not in ("host", "gpu"):
            raise KnobError(
                f"{where}: vllm knob slowdown_on must be host or gpu, not {self.slowdown_on!r}"
            )
        _fraction(self.slowdown, "slowdown", where)

    def llm_kwargs(self) -> dict[str, Any]:
        kwargs = {k: getattr(self, k) for k in self.LLM_ARGS if getattr(self, k) is not None}
        kwargs["disable_log_stats"] = False  # per-request timings and counters need stats
        return kwargs

    def gpus(self) -> int:
        return (self.tensor_parallel_size or 1) * (self.pipeline_parallel_size or 1)


@dataclass(frozen=True)
class OpenAIHTTPKnobs(Knobs):
    engine: ClassVar[str] = "openai-http"

    url: str | None = None  # a running server
    command: list | str | None = (
        None  # or a server the engine starts: {port} {host} {model} {python}
    )
    server: str | None = None  # or "llama_cpp.server"
    port: int | None = None  # the server's port ({port}); default: a free one
    model_format: str = "gguf"  # how {model} is written for synthetic models: gguf or hf
    startup_timeout_s: float = 120.0
    request_timeout_s: float = 300.0
    prompt_format: str = "auto"  # tokens, text, or auto (tokens if the server takes them)
    ignore_eos: bool = True
    min_tokens: bool = True
    api_key_env: str | None = None  # variable holding the bearer token (default OPENAI_API_KEY)
    served_model: str | None = None
    priority: bool = False  # send each request's priority (vllm serve --scheduling-policy priority)
    prefix_cache: bool = False  # the server caches shared prefixes
    vocab_size: int | None = None
    extra_body: dict = field(default_factory=dict)
    # llama_cpp.server's own knobs
    n_threads: int | None = None  # default: the usable cores less one
    n_ctx: int = 4096
    n_batch: int = 512
    n_gpu_layers: int = 0
    server_args: list = field(default_factory=list)

    def check(self, where: str) -> None:
        given = [k for k in ("url", "command", "server") if getattr(self, k) is not None]
        if len(given) != 1:
            raise KnobError(
                f"{where}: the openai-http engine needs exactly one of url, "
                f'command = [...] or server = "llama_cpp.server" (got '
                f"{', '.join(given) or 'none'})"
            )
        if self.server not in (None, "llama_cpp.server"):
            raise KnobError(
                f'{where}: openai-http knob server must be "llama_cpp.server", not {self.server!r}'
            )
        if self.prompt_format not in ("auto", "tokens", "text"):
            raise KnobError(
                f"{where}: prompt_format must be auto, tokens or text, got {self.prompt_format!r}"
            )
        if self.model_format not in ("gguf", "hf"):
            raise KnobError(f"{where}: model_format must be gguf or hf, got {self.model_format!r}")


@dataclass(frozen=True)
class TransformersKnobs(Knobs):
    engine: ClassVar[str] = "transformers"
    MODEL_FORMAT: ClassVar[str] = "hf"

    dtype: str | None = None  # float32 (CPU default), float16, bfloat16 (CUDA default)
    threads: int | None = None  # torch CPU threads; default on the CPU: the usable cores less one
    attn_implementation: str = "sdpa"

    def check(self, where: str) -> None:
        if self.dtype not in (None, "float32", "float16", "bfloat16"):
            raise KnobError(
                f"{where}: transformers knob dtype must be float32, float16 or "
                f"bfloat16, got {self.dtype!r}"
            )


def model_format(knobs: Any) -> str:
    """The format the engine's model is resolved in ("" = the name is left as it is)."""
    if isinstance(knobs, OpenAIHTTPKnobs):
        return "" if knobs.url is not None else knobs.model_format
    return type(knobs).MODEL_FORMAT if isinstance(knobs, Knobs) else ""
