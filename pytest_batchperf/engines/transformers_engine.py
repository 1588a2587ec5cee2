"""Hugging Face transformers ``generate``: padded static batching, the classic reference
that continuous batching is measured against.

Each wave the shared Scheduler forms (static, bucketed, dynamic; sequential = waves of
one) becomes one ``generate`` call: prompts left-padded to the wave's longest with an
attention mask, greedy, ``min_new_tokens = max_new_tokens`` = the wave's longest output
so EOS never ends a row early. Every row decodes until the wave's longest request is
done; a request's own tokens are the first ``max_output_tokens`` steps. A streamer
stamps the time of every decode step (after a CUDA sync on the GPU).

``continuous`` is not supported: padded ``generate`` cannot admit a request into a
running batch. Such cases raise EngineUnavailable, which the plugin reports as a skip.

Knobs: ``engines.config.TransformersKnobs``.
"""

from __future__ import annotations

import os
from typing import Any

from ..device import Device, compute_threads
from ..measure.trace import now
from ..workload.spec import Request, Workload
from ..workload.strategies import Strategy
from .base import Engine, EngineError, EngineSpec, EngineUnavailable, OutOfMemory
from .config import TransformersKnobs
from .kit import Round, probe_workload, run_steps

# Never reach for a hub: models are local directories (synthetic ones are written here).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

try:
    import torch
    import transformers
    from transformers.generation.streamers import BaseStreamer
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise EngineUnavailable(
        f"engine 'transformers' needs {exc.name or 'torch and transformers'}: "
        "pip install 'pytest-batchperf[transformers]'"
    ) from exc

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class _StepClock(BaseStreamer):
    """Records when each decode step's tokens exist (generate calls put once per step,
    after a first call with the prompt)."""

    def __init__(self, sync):
        self.times: list[float] = []
        self._prompt_seen = False
        self._sync = sync

    def put(self, value) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self._sync()
        self.times.append(now())

    def end(self) -> None:
        pass


class TransformersEngine(Engine):
    name = "transformers"

    def __init__(self, spec: EngineSpec):
        super().__init__(spec)
        k: TransformersKnobs = self.knobs
        self.on_gpu = Device.of(self.device).gpu
        if self.on_gpu and not torch.cuda.is_available():
            raise EngineUnavailable(
                f"profile {spec.profile!r} needs a CUDA GPU; torch {torch.__version__} sees none"
            )
        self.dtype_name = k.dtype or ("bfloat16" if self.on_gpu else "float32")
        threads = k.threads or (None if self.on_gpu else compute_threads(pinned=spec.cpus))
        if threads is not None:
            torch.set_num_threads(threads)
        self.path = spec.model.path
        dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
        self.model: Any
        try:
            self.model = transformers.AutoModelForCausalLM.from_pretrained(
                str(self.path),
                local_files_only=True,
                attn_implementation=k.attn_implementation,
                **{dtype_kw: _DTYPES[self.dtype_name]},
            )
        except (OSError, ValueError) as exc:
            raise EngineError(
                f"transformers could not load {self.path}: {str(exc).splitlines()[0]}"
            ) from None
        self.model.to(self.device).eval()
        cfg = self.model.config
        self._vocab = int(cfg.vocab_size)
        # Padding rows use EOS; EOS never ends a row (min_new_tokens), so any id would do.
        self.pad_id = int(cfg.eos_token_id if cfg.eos_token_id is not None else 0)
        self._sync = torch.cuda.synchronize if self.on_gpu else (lambda: None)

    @property
    def vocab_size(self) -> int:
        return self._vocab

    def describe(self) -> dict:
        d = {
            "engine": self.name,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "model": self.spec.model.name,
            "model_hash": self.spec.model.hash,
            "dtype": self.dtype_name,
            "attn_implementation": self.knobs.attn_implementation,
            "device": self.device,
            "torch_threads": torch.get_num_threads(),
        }
        if not self.on_gpu:
            d["compute_threads"] = torch.get_num_threads()
        if self.on_gpu:
            d["cuda"] = torch.version.cuda
            d["gpu"] = torch.cuda.get_device_name()
        return d

    def warmup(self) -> None:
        self.run_round(probe_workload((2, 2)), Strategy.STATIC, 2)

    def run_round(self, workload: Workload, strategy: Strategy, batch_size: int):
        if strategy is Strategy.CONTINUOUS:
            raise EngineUnavailable(
                "the transformers engine batches with padded generate(), which cannot add a "
                "request to a running batch: continuous batching is not supported (use static, "
                "bucketed or dynamic)"
            )
        rnd = Round(workload, strategy, batch_size)
        wave: list[Request] = []

        def step() -> None:
            steps = self._generate(wave)
            for r in wave:
                rnd.traces[r.id].token_times = steps[: r.max_output_tokens]
                rnd.finish(r.id, steps[-1])
            wave.clear()

        run_steps(rnd, wave.append, step)
        return rnd.trace()

    def _generate(self, wave: list[Request]) -> list[float]:
        """One padded generate() over the wave; the time of each decode step."""
        width = max(r.prompt_len for r in wave)
        new = max(r.max_output_tokens for r in wave)
        ids = torch.full((len(wave), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(wave), width), dtype=torch.long)
        for i, r in enumerate(wave):  # left padding: every row's last prompt token lines up
            ids[i, width - r.prompt_len :] = torch.tensor(r.prompt_tokens, dtype=torch.long)
            mask[i, width - r.prompt_len :] = 1
        clock = _StepClock(self._sync)
        try:
            with torch.inference_mode():
                self.model.generate(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    max_new_tokens=new,
                    min_new_tokens=new,
                    do_sample=False,
                    pad_token_id=self.pad_id,
                    streamer=clock,
                )
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise OutOfMemory(
                f"CUDA out of memory generating a padded batch of {len(wave)} x "
                f"({width} prompt + {new} new) tokens"
            ) from None
        if len(clock.times) != new:
            raise EngineError(f"generate() made {len(clock.times)} decode steps, expected {new}")
        return clock.times

    def close(self) -> None:
        self.model = None
        if self.on_gpu:
            torch.cuda.empty_cache()
