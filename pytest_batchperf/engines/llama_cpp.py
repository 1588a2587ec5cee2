"""llama.cpp through llama-cpp-python's low-level API: real multi-sequence batching.

Like llama.cpp's own ``parallel`` example, each step packs one ``llama_batch`` with the
next token of every generating sequence plus prompt chunks of newly admitted ones, each
token tagged with its sequence id, and decodes them in one ``llama_decode`` call. The
KV cache is unified across sequences; a finished sequence's cells are freed at once,
so under ``continuous`` its slot is refilled on the next step. EOS is ignored: every
request generates exactly its ``max_output_tokens`` (greedy argmax).

Knobs (profile options): n_threads, n_threads_batch, n_gpu_layers, n_ctx, n_batch,
n_ubatch, n_seq_max, flash_attn, use_mmap, verbose, slowdown (see below).

``slowdown`` (fraction, default 0) sleeps that fraction of each ``llama_decode`` call's
own duration: a real, proportional slowdown used to measure the gate's power. It waits
busily, like extra compute would: a sleep of a few tens of microseconds overshoots by more
than itself and lets llama.cpp's OpenMP workers doze off (a nominal 10 % cost 26 % at B1).
"""

from __future__ import annotations

import ctypes
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.gguf_model import check_gguf, gguf_path
from ..models.shapes import shape as shape_named
from ..profiles import Profile
from ..strategies import Scheduler, Strategy
from ..workload import Request, Workload
from .base import Engine, EngineError, EngineUnavailable, OutOfMemory, RequestTrace, RoundTrace, now

try:
    import llama_cpp as L
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise EngineUnavailable(
        "engine 'llama-cpp' needs llama-cpp-python: pip install 'pytest-batchperf[llama]'"
    ) from exc

_silence = L.llama_log_callback(lambda level, text, user: None)


def resolve_model(model: str) -> tuple[Path, str]:
    """(path, model hash) of ``synthetic:SHAPE`` or a GGUF file path."""
    if model.startswith("synthetic:"):
        s = shape_named(model.split(":", 1)[1])
        from ..models.gguf_model import WRITER_VERSION

        return gguf_path(s), f"synthetic-{s.name}-{s.key(WRITER_VERSION)}"
    path = Path(model).expanduser()
    try:
        check_gguf(path)
    except ValueError as exc:
        raise EngineError(str(exc)) from None
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as f:  # head and tail: cheap, and changes with any re-quantisation
        h.update(f.read(1 << 22))
        f.seek(max(0, path.stat().st_size - (1 << 22)))
        h.update(f.read())
    return path, h.hexdigest()[:16]


@dataclass
class _Seq:
    request: Request
    trace: RequestTrace
    pending: list[int]  # tokens still to feed: the prompt, then the last sampled token
    pos: int = 0
    generated: int = 0


class LlamaCppEngine(Engine):
    name = "llama-cpp"

    def __init__(self, profile: Profile):
        o = dict(profile.options)
        self.profile = profile
        self.device = profile.device
        self.path, self.model_hash = resolve_model(profile.model)
        self.n_ctx = int(o.get("n_ctx", 4096))
        self.n_batch = int(o.get("n_batch", 512))
        self.n_seq_max = int(o.get("n_seq_max", 64))
        self.slowdown = float(o.get("slowdown", 0.0))
        self.n_threads = int(o.get("n_threads", 2))
        L.llama_backend_init()
        if not o.get("verbose"):
            L.llama_log_set(_silence, ctypes.c_void_p())
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = int(o.get("n_gpu_layers", 0))
        if "use_mmap" in o:  # llama.cpp's use_mmap, now part of its load_mode
            mp.load_mode = L.LLAMA_LOAD_MODE_MMAP if o["use_mmap"] else L.LLAMA_LOAD_MODE_NONE
        self._model = L.llama_model_load_from_file(str(self.path).encode(), mp)
        if not self._model:
            raise EngineError(f"llama.cpp could not load the model {self.path}")
        cp = L.llama_context_default_params()
        cp.n_ctx = self.n_ctx
        cp.n_batch = self.n_batch
        cp.n_ubatch = int(o.get("n_ubatch", self.n_batch))
        cp.n_seq_max = self.n_seq_max
        cp.n_threads = self.n_threads
        cp.n_threads_batch = int(o.get("n_threads_batch", self.n_threads))
        cp.kv_unified = True  # sequences share one cache, as in llama.cpp's parallel example
        cp.no_perf = True
        if "flash_attn" in o and hasattr(cp, "flash_attn_type"):
            cp.flash_attn_type = 1 if o["flash_attn"] else 0
        self._ctx = L.llama_init_from_model(self._model, cp)
        if not self._ctx:
            L.llama_model_free(self._model)
            raise OutOfMemory(
                f"llama.cpp could not create a context (n_ctx={self.n_ctx}, "
                f"n_seq_max={self.n_seq_max}): out of memory?")
        self._mem = L.llama_get_memory(self._ctx)
        self._n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self._model))
        self._batch = L.llama_batch_init(self.n_batch, 0, 1)
        size = self.n_batch
        self._tok = np.ctypeslib.as_array(self._batch.token, shape=(size,))
        self._pos = np.ctypeslib.as_array(self._batch.pos, shape=(size,))
        self._nseq = np.ctypeslib.as_array(self._batch.n_seq_id, shape=(size,))
        self._logit_flags = np.ctypeslib.as_array(self._batch.logits, shape=(size,))
        self._seq_ptrs = [self._batch.seq_id[i] for i in range(size)]
        self._nseq[:] = 1

    @property
    def vocab_size(self) -> int:
        return self._n_vocab

    def describe(self) -> dict:
        return {
            "engine": self.name,
            "llama_cpp_python": L.__version__,
            "model": self.profile.model,
            "model_file": self.path.name,
            "model_hash": self.model_hash,
            "n_threads": self.n_threads,
            "n_gpu_layers": int(self.profile.options.get("n_gpu_layers", 0)),
            "n_ctx": self.n_ctx,
            "n_batch": self.n_batch,
            "system_info": L.llama_print_system_info().decode(errors="replace").strip(),
        }

    def warmup(self) -> None:
        """One tiny decode, so that thread pools and buffers exist before round one."""
        from ..workload import Request as R

        req = R(0, (5, 6, 7, 8), 2)
        wl = Workload(spec=None, requests=(req,))  # type: ignore[arg-type]
        self.run_round(wl, Strategy.SEQUENTIAL, 1)

    def _decode(self, n: int) -> None:
        self._batch.n_tokens = n
        start = time.perf_counter()
        rc = L.llama_decode(self._ctx, self._batch)
        if rc == 1:
            raise OutOfMemory(
                f"llama.cpp found no KV cache slot for the batch (n_ctx={self.n_ctx}): "
                "the batch does not fit")
        if rc != 0:
            raise EngineError(f"llama_decode failed with code {rc}")
        if self.slowdown > 0:
            end = time.perf_counter()
            deadline = end + self.slowdown * (end - start)
            while time.perf_counter() < deadline:
                pass

    def run_round(self, workload: Workload, strategy: Strategy, batch_size: int) -> RoundTrace:
        if batch_size > self.n_seq_max:
            raise OutOfMemory(
                f"batch size {batch_size} exceeds the profile's n_seq_max={self.n_seq_max}")
        need = max(r.prompt_len + r.max_output_tokens for r in workload.requests)
        if need > self.n_ctx:
            raise EngineError(f"a request needs {need} positions but n_ctx is {self.n_ctx}")
        L.llama_memory_clear(self._mem, True)
        sched = Scheduler(workload.requests, strategy, batch_size)
        t0 = now()
        traces = {r.id: RequestTrace(r.id, r.prompt_len, t0 + r.arrival_s, priority=r.priority)
                  for r in workload.requests}
        free = list(range(sched.batch_size - 1, -1, -1))
        active: dict[int, _Seq] = {}
        while True:
            t = now()
            for r in sched.admit(t - t0, len(active)):
                traces[r.id].scheduled = t
                active[free.pop()] = _Seq(r, traces[r.id], list(r.prompt_tokens))
            if not active:
                if sched.done:
                    break
                time.sleep(max(0.0, sched.next_wakeup(now() - t0) - (now() - t0)))
                continue
            outputs, n = self._fill_batch(active)
            self._decode(n)
            sampled = self._sample(len(outputs))
            t_tok = now()
            for seq, tok in zip(outputs, sampled):
                st = active[seq]
                st.generated += 1
                st.trace.token_times.append(t_tok)
                if st.generated >= st.request.max_output_tokens:
                    st.trace.finished = t_tok
                    L.llama_memory_seq_rm(self._mem, seq, -1, -1)
                    del active[seq]
                    free.append(seq)
                else:
                    st.pending = [int(tok)]
        return RoundTrace(start=t0, end=now(), requests=list(traces.values()), waves=sched.waves)

    def _fill_batch(self, active: dict[int, _Seq]) -> tuple[list[int], int]:
        """Pack the batch: decoding sequences first (one token each), then prompt chunks.

        Returns the sequence ids whose logits this batch yields, in batch order, and the
        number of tokens packed."""
        n, cap, outputs = 0, self.n_batch, []
        order = sorted(active.items(), key=lambda kv: kv[1].generated == 0)
        for seq, st in order:
            if n >= cap:
                break
            take = st.pending[: cap - n]
            k = len(take)
            self._tok[n : n + k] = take
            self._pos[n : n + k] = np.arange(st.pos, st.pos + k)
            self._logit_flags[n : n + k] = 0
            for i in range(n, n + k):
                self._seq_ptrs[i][0] = seq
            st.pos += k
            st.pending = st.pending[k:]
            if not st.pending:  # the whole prompt (or the last token) is in: sample after it
                self._logit_flags[n + k - 1] = 1
                outputs.append(seq)
            n += k
        return outputs, n

    def _sample(self, rows: int) -> np.ndarray:
        if not rows:
            return np.empty(0, dtype=int)
        logits = np.ctypeslib.as_array(L.llama_get_logits(self._ctx), shape=(rows, self._n_vocab))
        return logits.argmax(axis=1)

    def close(self) -> None:
        if getattr(self, "_ctx", None):
            L.llama_batch_free(self._batch)
            L.llama_free(self._ctx)
            L.llama_model_free(self._model)
            self._ctx = None
