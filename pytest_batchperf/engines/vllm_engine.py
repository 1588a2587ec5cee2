"""vLLM through its offline engine, with the plugin's Scheduler doing admission.

One ``vllm.LLM`` per session. Each round feeds requests to ``llm.llm_engine`` with
``add_request`` as the shared Scheduler admits them (at most B in flight for
``continuous``, waves of B for ``static``, one at a time for ``sequential``; arrivals
follow the workload's offsets) and drives ``step()`` itself, so B varies per case without
reloading; ``max_num_seqs`` is only the upper bound.

Timings are vLLM's own: with ``disable_log_stats=False`` every ``RequestOutput.metrics``
is the request's live ``RequestStateStats``, whose ``last_token_ts`` is the engine core's
timestamp of the iteration that produced the tokens just delivered (outputs are DELTA),
``first_token_ts`` that of the first and ``scheduled_ts`` when the core first scheduled it.
Preemptions come from vLLM's Prometheus counter (per round), KV cache capacity from its
cache config (per engine start, in describe()).

Knobs (profile options) passed to ``LLM``: gpu_memory_utilization, max_model_len,
max_num_seqs, max_num_batched_tokens, enable_prefix_caching, enforce_eager, dtype,
tensor_parallel_size, distributed_executor_backend, scheduling_policy, seed,
kv_cache_dtype, block_size, async_scheduling. Plus ``api``: ``offline`` (default, the
``LLM``'s engine stepped here) or ``async`` (``AsyncLLM``: each admitted request streams
on its own asyncio task, as a server would run it; the same Scheduler admits them at their
arrival offsets), ``multiprocessing`` (false runs the engine core in this process) and
``slowdown`` (fraction, default 0): the engine core busy-waits that fraction of each of
its steps' own duration after it, a real proportional slowdown used to measure the gate's
power (vllm_slowdown.py; any api, core in its own process or not); ``slowdown_on = "gpu"``
queues it as a GPU spin kernel instead, for GPU-bound engines that hide host time.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..profiles import Profile
from ..strategies import Scheduler, Strategy
from ..workload import Request, Workload
from . import vllm_slowdown
from .base import (Engine, EngineCrashed, EngineError, EngineUnavailable, OutOfMemory,
                   RequestTrace, RoundTrace, now)

LLM_KNOBS = (
    "gpu_memory_utilization", "max_model_len", "max_num_seqs", "max_num_batched_tokens",
    "enable_prefix_caching", "enforce_eager", "dtype", "tensor_parallel_size",
    "distributed_executor_backend", "scheduling_policy", "seed", "kv_cache_dtype",
    "block_size", "async_scheduling", "compilation_config",
)
OWN_KNOBS = ("api", "multiprocessing", "slowdown", "slowdown_on", "verbose")
PREEMPTIONS = "vllm:num_preemptions"
PREFIX_HITS, PREFIX_QUERIES = "vllm:prefix_cache_hits", "vllm:prefix_cache_queries"


def llm_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    """The profile's knobs as ``LLM(...)`` keyword arguments; unknown knobs are refused
    (a typo must not silently benchmark the defaults)."""
    unknown = sorted(set(options) - set(LLM_KNOBS) - set(OWN_KNOBS))
    if unknown:
        raise EngineError(f"unknown vllm knob(s) {', '.join(unknown)}; known: "
                          f"{', '.join(LLM_KNOBS + OWN_KNOBS)}")
    kwargs = {k: options[k] for k in LLM_KNOBS if k in options}
    kwargs["disable_log_stats"] = False  # per-request timings and counters need stats
    return kwargs


def resolve_model(model: str) -> tuple[str, str]:
    """(model directory, model hash) of ``synthetic:SHAPE`` or a local HF model directory."""
    if model.startswith("synthetic:"):
        from ..models.hf_model import WRITER_VERSION, hf_model_dir
        from ..models.shapes import shape

        s = shape(model.split(":", 1)[1])
        return str(hf_model_dir(s)), f"synthetic-{s.name}-{s.key(WRITER_VERSION)}"
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise EngineError(f"model {model!r}: not a Hugging Face model directory "
                          "(no config.json there); the vllm engine never downloads")
    weights = sorted(path.glob("*.safetensors"))
    stamp = ",".join(f"{p.name}:{p.stat().st_size}" for p in weights)
    import hashlib

    return str(path), hashlib.sha256(stamp.encode()).hexdigest()[:16]


def counter(metrics: Iterable[Any], name: str) -> float:
    """Sum of a vLLM Prometheus counter over its label sets (engines); 0 if absent."""
    return float(sum(getattr(m, "value", 0) for m in metrics if m.name == name))


def kv_cache_tokens(cache_config: Any) -> int:
    return int((cache_config.num_gpu_blocks or 0) * cache_config.block_size)


@dataclass
class _Live:
    request: Request
    trace: RequestTrace


def record_output(live: _Live, output: Any, clock_offset: float, received: float) -> bool:
    """Fold one DELTA ``RequestOutput`` into the request's trace; True when it finished.

    Every token of the delta gets the engine core's timestamp of the iteration that made
    it (``metrics.last_token_ts``, monotonic clock, shifted onto perf_counter's by
    ``clock_offset``); without stats (None) the time it reached us is used instead."""
    stats = output.metrics
    new = len(output.outputs[0].token_ids)
    if stats is not None and getattr(stats, "last_token_ts", 0.0):
        t = stats.last_token_ts + clock_offset
    else:
        t = received
    live.trace.token_times.extend([t] * new)
    if not output.finished:
        return False
    trace = live.trace
    if stats is not None and getattr(stats, "scheduled_ts", 0.0):
        trace.scheduled = stats.scheduled_ts + clock_offset
    if stats is not None and getattr(stats, "first_token_ts", 0.0) and trace.token_times:
        trace.token_times[0] = stats.first_token_ts + clock_offset
    trace.finished = trace.token_times[-1] if trace.token_times else received
    want = live.request.max_output_tokens
    if trace.output_tokens != want:
        trace.error = f"vLLM returned {trace.output_tokens} tokens, {want} were asked for"
    return True


def fits(requests: tuple[Request, ...], batch_size: int, capacity_tokens: int) -> bool:
    """Whether the B longest requests can be resident in the KV cache at once."""
    need = sorted((r.prompt_len + r.max_output_tokens for r in requests), reverse=True)
    return sum(need[:batch_size]) <= capacity_tokens


class VLLMEngine(Engine):
    name = "vllm"

    def __init__(self, profile: Profile):
        self.profile = profile
        self.device = profile.device
        o = dict(profile.options)
        self.kwargs = llm_kwargs(o)
        self.slowdown = float(o.get("slowdown", 0.0))
        self.inproc = o.get("multiprocessing", True) is False
        self.api = o.get("api", "offline")
        if self.api not in ("offline", "async"):
            raise EngineError(f"vllm knob api must be 'offline' or 'async', not {self.api!r}")
        if self.slowdown < 0:
            raise EngineError(f"vllm knob slowdown must be >= 0, got {self.slowdown}")
        self.slowdown_on = o.get("slowdown_on", "host")
        if self.slowdown_on not in vllm_slowdown.PLACES:
            raise EngineError(f"vllm knob slowdown_on must be one of "
                              f"{', '.join(vllm_slowdown.PLACES)}, not {self.slowdown_on!r}")
        # Read by vllm_slowdown.register() in the engine core's process.
        os.environ[vllm_slowdown.ENV] = repr(self.slowdown)
        os.environ[vllm_slowdown.ENV_ON] = self.slowdown_on
        if self.inproc:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")  # flashinfer is optional
        try:
            import vllm
            from vllm import SamplingParams
            from vllm.inputs import TokensPrompt
            from vllm.sampling_params import RequestOutputKind
        except ImportError as exc:
            raise EngineUnavailable(
                f"engine 'vllm' needs vllm ({exc}): pip install 'pytest-batchperf[vllm]'") from None
        vllm_slowdown.register()
        self._vllm_version = vllm.__version__
        self._SamplingParams, self._TokensPrompt = SamplingParams, TokensPrompt
        self._delta = RequestOutputKind.DELTA
        self.model_dir, self.model_hash = resolve_model(profile.model)
        self._round = 0
        self.llm = self.async_llm = self._loop = None
        self._build()

    def _build(self) -> None:
        try:
            if self.api == "async":
                self._loop = asyncio.new_event_loop()
                self.async_llm = self._loop.run_until_complete(self._start_async())
                cfg = self.async_llm.vllm_config
            else:
                from vllm import LLM

                self.llm = LLM(model=self.model_dir, **self.kwargs)
                self.engine = self.llm.llm_engine
                cfg = self.engine.vllm_config
        except Exception as exc:  # noqa: BLE001 - vLLM raises many kinds at start-up
            self.close()
            raise _classify(exc, "start vLLM") from None
        self.config = cfg
        self.max_num_seqs = int(cfg.scheduler_config.max_num_seqs)
        self.max_model_len = int(cfg.model_config.max_model_len)
        self.kv_tokens = kv_cache_tokens(cfg.cache_config)
        self.prefix_caching = bool(cfg.cache_config.enable_prefix_caching)
        self.priority = cfg.scheduler_config.policy == "priority"
        # Engine-core timestamps are time.monotonic(); traces use perf_counter.
        self.clock_offset = time.perf_counter() - time.monotonic()

    async def _start_async(self):
        # Built inside the loop that will run every round: AsyncLLM binds its output
        # handler to the running loop.
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        return AsyncLLM.from_engine_args(AsyncEngineArgs(model=self.model_dir, **self.kwargs))

    @property
    def vocab_size(self) -> int:
        return int(self.config.model_config.get_vocab_size())

    def supports(self, feature: str) -> bool:
        return {"priority": self.priority, "prefix_cache": self.prefix_caching}.get(feature, False)

    def pids(self) -> list[int]:
        # The engine core is a child process: the sampler walks children of these pids.
        return [os.getpid()]

    def describe(self) -> dict:
        return {
            "engine": self.name,
            "vllm": self._vllm_version,
            "model": self.profile.model,
            "model_hash": self.model_hash,
            "kv_cache_tokens": self.kv_tokens,
            "max_num_seqs": self.max_num_seqs,
            "max_model_len": self.max_model_len,
            "prefix_caching": self.prefix_caching,
            "scheduling_policy": "priority" if self.priority else "fcfs",
            "multiprocessing": not self.inproc,
            "api": self.api,
            **({"slowdown": self.slowdown, "slowdown_on": self.slowdown_on}
               if self.slowdown else {}),
            **{f"option.{k}": v for k, v in sorted(self.kwargs.items()) if k != "disable_log_stats"},
        }

    def warmup(self) -> None:
        req = Request(0, tuple(range(10, 42)), 8)
        self.run_round(Workload(spec=None, requests=(req,)), Strategy.SEQUENTIAL, 1)  # type: ignore[arg-type]

    def _params(self, r: Request):
        n = r.max_output_tokens
        return self._SamplingParams(max_tokens=n, min_tokens=n, ignore_eos=True, temperature=0.0,
                                    detokenize=False, output_kind=self._delta)

    def _check(self, workload: Workload, batch_size: int) -> None:
        if batch_size > self.max_num_seqs:
            raise OutOfMemory(f"batch size {batch_size} exceeds max_num_seqs={self.max_num_seqs} "
                              "(the engine's upper bound; raise it in the profile to try)")
        need = max(r.prompt_len + r.max_output_tokens for r in workload.requests)
        if need > self.max_model_len:
            raise EngineError(f"a request needs {need} positions but max_model_len is "
                              f"{self.max_model_len}")
        if not fits(workload.requests, batch_size, self.kv_tokens):
            raise OutOfMemory(f"{batch_size} requests do not fit in the KV cache of "
                              f"{self.kv_tokens} tokens at once")

    def run_round(self, workload: Workload, strategy: Strategy, batch_size: int) -> RoundTrace:
        if self.llm is None and self.async_llm is None:  # the last round killed the core
            self._build()
        self._check(workload, batch_size)
        try:
            return self._run(workload, strategy, batch_size)
        except (EngineError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001
            error = _classify(exc, f"run a round (batch {batch_size})")
            self._abort_all()
            raise error from None

    def _run(self, workload: Workload, strategy: Strategy, batch_size: int) -> RoundTrace:
        from vllm.v1.metrics.reader import get_metrics_snapshot

        self._round += 1
        if self.prefix_caching:  # rounds must not reuse the previous round's prompts
            if self.api == "async":
                self._loop.run_until_complete(self.async_llm.reset_prefix_cache())
            else:
                self.llm.reset_prefix_cache()
        before = get_metrics_snapshot()
        sched = Scheduler(workload.requests, strategy, batch_size)
        t0 = now()
        traces = {r.id: RequestTrace(r.id, r.prompt_len, t0 + r.arrival_s, priority=r.priority)
                  for r in workload.requests}
        prefix = f"r{self._round}-"
        if self.api == "async":
            self._loop.run_until_complete(self._drive_async(sched, t0, traces, prefix))
        else:
            self._drive_offline(sched, t0, traces, prefix)
        after = get_metrics_snapshot()
        # KV cache capacity is not a per-round stat: vLLM sizes it from the memory free when
        # it profiles at start-up, which moves by ~0.1% between starts (A/A would fail an
        # exact comparison). It is recorded in describe(), so the environment diff shows it.
        stats = {"preemptions": counter(after, PREEMPTIONS) - counter(before, PREEMPTIONS)}
        queries = counter(after, PREFIX_QUERIES) - counter(before, PREFIX_QUERIES)
        if self.prefix_caching and queries:
            stats["prefix_cache_hit_pct"] = 100.0 * (
                counter(after, PREFIX_HITS) - counter(before, PREFIX_HITS)) / queries
        return RoundTrace(start=t0, end=now(), requests=list(traces.values()), waves=sched.waves,
                          stats=stats)

    def _drive_offline(self, sched: Scheduler, t0: float, traces: dict, prefix: str) -> None:
        live: dict[str, _Live] = {}
        engine = self.engine
        while True:
            t = now()
            for r in sched.admit(t - t0, len(live)):
                rid = prefix + str(r.id)
                traces[r.id].scheduled = t
                live[rid] = _Live(r, traces[r.id])
                engine.add_request(rid, self._TokensPrompt(prompt_token_ids=list(r.prompt_tokens)),
                                   self._params(r), priority=r.priority if self.priority else 0)
            if not live:
                if sched.done:
                    break
                time.sleep(max(0.0, sched.next_wakeup(now() - t0) - (now() - t0)))
                continue
            outputs = engine.step()
            received = now()
            for out in outputs:
                if record_output(live[out.request_id], out, self.clock_offset, received):
                    del live[out.request_id]

    async def _drive_async(self, sched: Scheduler, t0: float, traces: dict, prefix: str) -> None:
        """The Scheduler's admissions become streaming AsyncLLM requests, one task each."""
        running: set[asyncio.Task] = set()
        while True:
            t = now()
            for r in sched.admit(t - t0, len(running)):
                traces[r.id].scheduled = t
                running.add(asyncio.ensure_future(self._stream(_Live(r, traces[r.id]), prefix)))
            elapsed = now() - t0
            wake = sched.next_wakeup(elapsed)
            # Nothing more can start before ``wake``; a wake-up already due means only a
            # finishing request can free a slot (or end a wave).
            timeout = wake - elapsed if wake is not None and wake > elapsed else None
            if not running:
                if sched.done:
                    break
                await asyncio.sleep(timeout or 0.0)
                continue
            done, running = await asyncio.wait(running, timeout=timeout,
                                               return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a failed request fails the round

    async def _stream(self, live: _Live, prefix: str) -> None:
        r = live.request
        prompt = self._TokensPrompt(prompt_token_ids=list(r.prompt_tokens))
        async for out in self.async_llm.generate(prompt, self._params(r), prefix + str(r.id),
                                                 priority=r.priority if self.priority else 0):
            record_output(live, out, self.clock_offset, now())

    def _abort_all(self) -> None:
        """After a failed round: drop what is left, or the whole engine if its core died."""
        if self.api == "async":  # its streams were cancelled mid-flight: start afresh
            self.close()
            return
        try:
            ids = list(self.engine.output_processor.request_states)
            if ids:
                self.engine.abort_request(ids, internal=True)
        except Exception:  # noqa: BLE001 - the core is gone: rebuild on the next round
            self.close()

    def close(self) -> None:
        llm, self.llm = self.llm, None
        async_llm, self.async_llm = self.async_llm, None
        try:
            if llm is not None:
                llm.llm_engine.engine_core.shutdown()
            if async_llm is not None:
                async_llm.shutdown()
        except Exception:  # noqa: BLE001 - closing a dead engine must not fail the session
            pass
        if self._loop is not None:
            # AsyncLLM's output handlers are tasks of this loop: end them before closing
            # it, as asyncio.run does, or they complain at exit.
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()
            self._loop = None
        if llm is None and async_llm is None:
            return
        del llm, async_llm
        try:
            import gc

            import torch

            gc.collect()
            torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass


def _classify(exc: Exception, doing: str) -> EngineError:
    """vLLM's exception as the plugin's: OOM (the sweep goes on), a dead core, or an error."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    low = text.lower()
    if "out of memory" in low or "outofmemory" in low or "no available memory for the cache" in low \
            or "kv cache" in low and "larger than" in low:
        return OutOfMemory(f"vLLM ran out of GPU memory trying to {doing}: {text}")
    if type(exc).__name__ == "EngineDeadError":
        return EngineCrashed(f"vLLM's engine core died trying to {doing}: {text}; it is "
                             "restarted for the next case")
    return EngineError(f"vLLM failed to {doing}: {text}")
