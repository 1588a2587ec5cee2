"""vLLM through its offline engine, with the plugin's Scheduler doing admission.

One ``vllm.LLM`` per engine process. Each round feeds requests to ``llm.llm_engine`` with
``add_request`` as the Scheduler admits them and drives ``step()`` itself, so B varies per
case without reloading; ``max_num_seqs`` is only the upper bound. With ``api = "async"``
each admitted request streams from ``AsyncLLM`` on its own asyncio task, as a server runs it.

Timings are vLLM's own: with stats on, every ``RequestOutput.metrics`` is the request's
live ``RequestStateStats``, whose ``last_token_ts`` is the engine core's timestamp of the
iteration that produced the tokens just delivered (outputs are DELTA), ``first_token_ts``
that of the first and ``scheduled_ts`` when the core first scheduled it. Preemptions and
prefix-cache hits come from vLLM's Prometheus counters (per round), KV cache capacity from
its cache config (per engine start, in describe()).

Knobs: ``engines.config.VLLMKnobs``. ``slowdown`` slows the engine core's steps (host
busy-wait, or a GPU spin with ``slowdown_on = "gpu"``): ``vllm_slowdown``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..measure.trace import RequestTrace
from ..workload.spec import Request, Workload
from ..workload.strategies import Strategy
from . import vllm_slowdown
from .base import Engine, EngineCrashed, EngineError, EngineSpec, EngineUnavailable, OutOfMemory
from .config import VLLMKnobs
from .kit import Round, probe_workload, run_steps, run_tasks

PREEMPTIONS = "vllm:num_preemptions"
PREFIX_HITS, PREFIX_QUERIES = "vllm:prefix_cache_hits", "vllm:prefix_cache_queries"


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

    def stamp(name: str) -> float:  # the engine core's timestamp, 0.0 where there is none
        return float(getattr(output.metrics, name, None) or 0.0)

    new = len(output.outputs[0].token_ids)
    last = stamp("last_token_ts")
    live.trace.token_times.extend([last + clock_offset if last else received] * new)
    if not output.finished:
        return False
    trace = live.trace
    if stamp("scheduled_ts"):
        trace.scheduled = stamp("scheduled_ts") + clock_offset
    if stamp("first_token_ts") and trace.token_times:
        trace.token_times[0] = stamp("first_token_ts") + clock_offset
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

    def __init__(self, spec: EngineSpec):
        super().__init__(spec)
        k: VLLMKnobs = self.knobs
        self.kwargs = k.llm_kwargs()
        # Read by vllm_slowdown.register() in the engine core's process.
        os.environ[vllm_slowdown.ENV] = repr(k.slowdown)
        os.environ[vllm_slowdown.ENV_ON] = k.slowdown_on
        if not k.multiprocessing:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")  # flashinfer is optional
        try:
            import vllm
            from vllm import SamplingParams
            from vllm.inputs import TokensPrompt
            from vllm.sampling_params import RequestOutputKind
        except ImportError as exc:
            raise EngineUnavailable(
                f"engine 'vllm' needs vllm ({exc}): pip install 'pytest-batchperf[vllm]'"
            ) from None
        vllm_slowdown.register()
        self._vllm_version = vllm.__version__
        self._SamplingParams, self._TokensPrompt = SamplingParams, TokensPrompt
        self._delta = RequestOutputKind.DELTA
        self.model_dir = str(spec.model.target)
        self._round = 0
        self.llm: Any = None
        self.async_llm: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._build()

    def _build(self) -> None:
        try:
            if self.knobs.api == "async":
                self._loop = asyncio.new_event_loop()
                self.async_llm = self._loop.run_until_complete(self._start_async())
                cfg = self.async_llm.vllm_config
            else:
                from vllm import LLM

                self.llm = LLM(model=self.model_dir, **self.kwargs)
                self.engine = self.llm.llm_engine
                cfg = self.engine.vllm_config
        except Exception as exc:
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

    async def _start_async(self) -> Any:
        # Built inside the loop that runs every round: AsyncLLM binds its output handler
        # to the running loop.
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        return AsyncLLM.from_engine_args(AsyncEngineArgs(model=self.model_dir, **self.kwargs))

    @property
    def vocab_size(self) -> int:
        return int(self.config.model_config.get_vocab_size())

    def supports(self, feature: str) -> bool:
        return {"priority": self.priority, "prefix_cache": self.prefix_caching}.get(feature, False)

    def describe(self) -> dict:
        k = self.knobs
        return {
            "engine": self.name,
            "vllm": self._vllm_version,
            "model": self.spec.model.name,
            "model_hash": self.spec.model.hash,
            "kv_cache_tokens": self.kv_tokens,
            "max_num_seqs": self.max_num_seqs,
            "max_model_len": self.max_model_len,
            "prefix_caching": self.prefix_caching,
            "scheduling_policy": "priority" if self.priority else "fcfs",
            "multiprocessing": k.multiprocessing,
            "api": k.api,
            **({"slowdown": k.slowdown, "slowdown_on": k.slowdown_on} if k.slowdown else {}),
            **{
                f"option.{n}": v for n, v in sorted(self.kwargs.items()) if n != "disable_log_stats"
            },
        }

    def warmup(self) -> None:
        self.run_round(probe_workload((8,), prompt=32), Strategy.SEQUENTIAL, 1)

    def _params(self, r: Request) -> Any:
        n = r.max_output_tokens
        return self._SamplingParams(
            max_tokens=n,
            min_tokens=n,
            ignore_eos=True,
            temperature=0.0,
            detokenize=False,
            output_kind=self._delta,
        )

    def _check(self, workload: Workload, batch_size: int) -> None:
        # A priority case keeps more in flight than the engine runs, so that it queues here.
        queues = self.priority and any(r.priority for r in workload.requests)
        if batch_size > self.max_num_seqs and not queues:
            raise OutOfMemory(
                f"batch size {batch_size} exceeds max_num_seqs={self.max_num_seqs} "
                "(the engine's upper bound; raise it in the profile to try)"
            )
        need = max(r.prompt_len + r.max_output_tokens for r in workload.requests)
        if need > self.max_model_len:
            raise EngineError(
                f"a request needs {need} positions but max_model_len is {self.max_model_len}"
            )
        if not fits(workload.requests, batch_size, self.kv_tokens):
            raise OutOfMemory(
                f"{batch_size} requests do not fit in the KV cache of "
                f"{self.kv_tokens} tokens at once"
            )

    def run_round(self, workload: Workload, strategy: Strategy, batch_size: int):
        if self.llm is None and self.async_llm is None:  # the last round killed the core
            self._build()
        self._check(workload, batch_size)
        try:
            return self._run(workload, strategy, batch_size)
        except (EngineError, KeyboardInterrupt):
            raise
        except Exception as exc:
            error = _classify(exc, f"run a round (batch {batch_size})")
            self._abort_all()
            raise error from None

    def _run(self, workload: Workload, strategy: Strategy, batch_size: int):
        from vllm.v1.metrics.reader import get_metrics_snapshot

        self._round += 1
        if self.prefix_caching:  # rounds must not reuse the previous round's prompts
            if self._loop is not None:
                self._loop.run_until_complete(self.async_llm.reset_prefix_cache())
            else:
                self.llm.reset_prefix_cache()
        before = get_metrics_snapshot()
        rnd = Round(workload, strategy, batch_size)
        prefix = f"r{self._round}-"
        if self._loop is not None:
            self._loop.run_until_complete(run_tasks(rnd, lambda r: self._stream(rnd, r, prefix)))
        else:
            self._drive_offline(rnd, prefix)
        after = get_metrics_snapshot()
        # KV cache capacity is sized from the memory free at start-up and moves slightly
        # between starts: it is recorded in describe(), not compared exactly per round.
        stats = {"preemptions": counter(after, PREEMPTIONS) - counter(before, PREEMPTIONS)}
        queries = counter(after, PREFIX_QUERIES) - counter(before, PREFIX_QUERIES)
        if self.prefix_caching and queries:
            stats["prefix_cache_hit_pct"] = (
                100.0 * (counter(after, PREFIX_HITS) - counter(before, PREFIX_HITS)) / queries
            )
        return rnd.trace(stats)

    def _drive_offline(self, rnd: Round, prefix: str) -> None:
        live: dict[str, _Live] = {}
        engine = self.engine

        def start(r: Request) -> None:
            rid = prefix + str(r.id)
            live[rid] = _Live(r, rnd.traces[r.id])
            engine.add_request(
                rid,
                self._TokensPrompt(prompt_token_ids=list(r.prompt_tokens)),
                self._params(r),
                priority=r.priority if self.priority else 0,
            )

        def step() -> None:
            outputs = engine.step()
            received = rnd.clock()
            for out in outputs:
                item = live[out.request_id]
                if record_output(item, out, self.clock_offset, received):
                    del live[out.request_id]
                    rnd.finish(item.request.id, item.trace.finished)

        run_steps(rnd, start, step)

    async def _stream(self, rnd: Round, r: Request, prefix: str) -> None:
        live = _Live(r, rnd.traces[r.id])
        prompt = self._TokensPrompt(prompt_token_ids=list(r.prompt_tokens))
        async for out in self.async_llm.generate(
            prompt, self._params(r), prefix + str(r.id), priority=r.priority if self.priority else 0
        ):
            record_output(live, out, self.clock_offset, rnd.clock())

    def _abort_all(self) -> None:
        """After a failed round: drop what is left, or the whole engine if its core died."""
        if self._loop is not None:  # its streams were cancelled mid-flight: start afresh
            self.close()
            return
        try:
            ids = list(self.engine.output_processor.request_states)
            if ids:
                self.engine.abort_request(ids, internal=True)
        except Exception:
            self.close()

    def close(self) -> None:
        llm, self.llm = self.llm, None
        async_llm, self.async_llm = self.async_llm, None
        try:
            if llm is not None:
                llm.llm_engine.engine_core.shutdown()
            if async_llm is not None:
                async_llm.shutdown()
        except Exception:
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
        except Exception:
            pass


def _classify(exc: Exception, doing: str) -> EngineError:
    """vLLM's exception as the plugin's: OOM (the sweep goes on), a dead core, or an error."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    low = text.lower()
    if (
        "out of memory" in low
        or "outofmemory" in low
        or "no available memory for the cache" in low
        or ("kv cache" in low and "larger than" in low)
    ):
        return OutOfMemory(f"vLLM ran out of GPU memory trying to {doing}: {text}")
    if type(exc).__name__ == "EngineDeadError":
        return EngineCrashed(
            f"vLLM's engine core died trying to {doing}: {text}; it is restarted for the next case"
        )
    return EngineError(f"vLLM failed to {doing}: {text}")
