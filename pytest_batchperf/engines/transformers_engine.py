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

Knobs: dtype (float32, float16, bfloat16; default float32 on the CPU, bfloat16 on CUDA),
threads (torch CPU threads), attn_implementation (default sdpa).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..models.shapes import shape as shape_named
from ..profiles import Profile
from ..strategies import Scheduler, Strategy
from ..workload import Request, Workload
from .base import Engine, EngineError, EngineUnavailable, OutOfMemory, RequestTrace, RoundTrace, now

# Never reach for a hub: models are local directories (synthetic ones are written here).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# OMP_WAIT_POLICY is left alone: PASSIVE helps on an oversubscribed machine but halved
# static-batch throughput on a quiet one (921-1096 -> 447-492 tok/s, tiny, B8); a profile
# can still set it through its env table.

try:
    import torch
    import transformers
    from transformers.generation.streamers import BaseStreamer
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise EngineUnavailable(
        f"engine 'transformers' needs {exc.name or 'torch and transformers'}: "
        "pip install 'pytest-batchperf[transformers]'") from exc

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


def resolve_model(model: str) -> tuple[Path, str]:
    """(directory, model hash) of ``synthetic:SHAPE`` or a local model directory."""
    if model.startswith("synthetic:"):
        from ..models.hf_model import WRITER_VERSION, hf_model_dir

        s = shape_named(model.split(":", 1)[1])
        return hf_model_dir(s), f"synthetic-{s.name}-hf-{s.key(WRITER_VERSION)}"
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise EngineError(f"model directory {path} has no config.json (the transformers engine "
                          "loads local Hugging Face model directories only)")
    from ..models.gguf_model import file_hash

    return path, file_hash(path / "config.json")


class TransformersEngine(Engine):
    name = "transformers"

    def __init__(self, profile: Profile):
        o = dict(profile.options)
        self.profile = profile
        self.device = profile.device
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineUnavailable(f"profile {profile.name!r} needs a CUDA GPU; torch "
                                    f"{torch.__version__} sees none")
        dtype_name = str(o.get("dtype", "bfloat16" if self.device.startswith("cuda") else "float32"))
        if dtype_name not in _DTYPES:
            raise EngineError(f"profile {profile.name!r}: dtype must be one of "
                              f"{', '.join(_DTYPES)}, got {dtype_name!r}")
        self.dtype_name = dtype_name
        if "threads" in o:
            torch.set_num_threads(int(o["threads"]))
        self.attn = str(o.get("attn_implementation", "sdpa"))
        self.path, self.model_hash = resolve_model(profile.model)
        dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
        try:
            self.model = transformers.AutoModelForCausalLM.from_pretrained(
                str(self.path), local_files_only=True, attn_implementation=self.attn,
                **{dtype_kw: _DTYPES[dtype_name]})
        except (OSError, ValueError) as exc:
            raise EngineError(f"transformers could not load {self.path}: "
                              f"{str(exc).splitlines()[0]}") from None
        self.model.to(self.device).eval()
        cfg = self.model.config
        self._vocab = int(cfg.vocab_size)
        # Padding rows use EOS; EOS never ends a row (min_new_tokens), so any id would do.
        self.pad_id = int(cfg.eos_token_id if cfg.eos_token_id is not None else 0)
        self._sync = torch.cuda.synchronize if self.device.startswith("cuda") else (lambda: None)

    @property
    def vocab_size(self) -> int:
        return self._vocab

    def describe(self) -> dict:
        d = {
            "engine": self.name,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "model": self.profile.model,
            "model_hash": self.model_hash,
            "dtype": self.dtype_name,
            "attn_implementation": self.attn,
            "device": self.device,
            "torch_threads": torch.get_num_threads(),
        }
        if self.device.startswith("cuda"):
            d["cuda"] = torch.version.cuda
            d["gpu"] = torch.cuda.get_device_name()
        return d

    def warmup(self) -> None:
        wl = Workload(spec=None, requests=(Request(0, (5, 6, 7, 8), 2), Request(1, (9, 10), 2)))  # type: ignore[arg-type]
        self.run_round(wl, Strategy.STATIC, 2)

    def run_round(self, workload: Workload, strategy: Strategy, batch_size: int) -> RoundTrace:
        strategy = Strategy.parse(strategy)
        if strategy is Strategy.CONTINUOUS:
            raise EngineUnavailable(
                "the transformers engine batches with padded generate(), which cannot add a "
                "request to a running batch: continuous batching is not supported (use static, "
                "bucketed or dynamic)")
        sched = Scheduler(workload.requests, strategy, batch_size)
        t0 = now()
        traces = {r.id: RequestTrace(r.id, r.prompt_len, t0 + r.arrival_s, priority=r.priority)
                  for r in workload.requests}
        while not sched.done:
            wave = sched.admit(now() - t0, 0)
            if not wave:
                wake = sched.next_wakeup(now() - t0)
                time.sleep(max(0.0, wake - (now() - t0)))
                continue
            started = now()
            steps = self._generate(wave)
            for r in wave:
                tr = traces[r.id]
                tr.scheduled = started
                tr.token_times = steps[: r.max_output_tokens]
                tr.finished = steps[-1]
        return RoundTrace(start=t0, end=now(), requests=list(traces.values()), waves=sched.waves)

    def _generate(self, wave: list[Request]) -> list[float]:
        """One padded generate() over the wave; the time of each decode step."""
        width = max(r.prompt_len for r in wave)
        new = max(r.max_output_tokens for r in wave)
        ids = torch.full((len(wave), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(wave), width), dtype=torch.long)
        for i, r in enumerate(wave):  # left padding: every row's last prompt token lines up
            ids[i, width - r.prompt_len:] = torch.tensor(r.prompt_tokens, dtype=torch.long)
            mask[i, width - r.prompt_len:] = 1
        clock = _StepClock(self._sync)
        try:
            with torch.inference_mode():
                self.model.generate(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                    max_new_tokens=new, min_new_tokens=new, do_sample=False,
                    pad_token_id=self.pad_id, streamer=clock)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise OutOfMemory(f"CUDA out of memory generating a padded batch of {len(wave)} x "
                              f"({width} prompt + {new} new) tokens") from None
        if len(clock.times) != new:
            raise EngineError(f"generate() made {len(clock.times)} decode steps, expected {new}")
        return clock.times

    def close(self) -> None:
        self.model = None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
