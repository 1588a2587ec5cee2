"""llama.cpp through llama-cpp-python's low-level API: real multi-sequence batching.

Like llama.cpp's own ``parallel`` example, each step packs one ``llama_batch`` with the
next token of every generating sequence plus prompt chunks of newly admitted ones, each
token tagged with its sequence id, and decodes them in one ``llama_decode`` call. The
KV cache is unified across sequences; a finished sequence's cells are freed at once,
so under ``continuous`` its slot is refilled on the next step. EOS is ignored: every
request generates exactly its ``max_output_tokens`` (greedy argmax).

Knobs: ``engines.config.LlamaCppKnobs``. ``slowdown`` busy-waits that fraction of each
``llama_decode`` call's own duration after it: a sleep of a few tens of microseconds
overshoots by more than itself and lets llama.cpp's worker threads doze off.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass

import numpy as np

from ..device import compute_threads
from ..workload.spec import Request, Workload
from ..workload.strategies import Strategy
from .base import Engine, EngineError, EngineSpec, EngineUnavailable, OutOfMemory
from .config import LlamaCppKnobs
from .kit import Round, probe_workload, run_steps

try:
    import llama_cpp as L
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise EngineUnavailable(
        "engine 'llama-cpp' needs llama-cpp-python: pip install 'pytest-batchperf[llama]'"
    ) from exc

_silence = L.llama_log_callback(lambda level, text, user: None)


def _load_mode(mmap: bool | None, mlock: bool | None, default: int) -> int:
    """llama.cpp's use_mmap and use_mlock, which its load_mode now holds together."""
    if mmap is None:  # the default (auto) maps the file on the CPU
        mmap = default not in (
            L.LLAMA_LOAD_MODE_NONE,
            L.LLAMA_LOAD_MODE_MLOCK,
            L.LLAMA_LOAD_MODE_DIRECT_IO,
        )
    if mlock:
        return L.LLAMA_LOAD_MODE_MMAP_MLOCK if mmap else L.LLAMA_LOAD_MODE_MLOCK
    return L.LLAMA_LOAD_MODE_MMAP if mmap else L.LLAMA_LOAD_MODE_NONE


@dataclass
class _Seq:
    request: Request
    pending: list[int]  # tokens still to feed: the prompt, then the last sampled token
    pos: int = 0
    generated: int = 0


class LlamaCppEngine(Engine):
    name = "llama-cpp"

    def __init__(self, spec: EngineSpec):
        super().__init__(spec)
        k: LlamaCppKnobs = self.knobs
        self.path = spec.model.path
        L.llama_backend_init()
        if not k.verbose:
            L.llama_log_set(_silence, ctypes.c_void_p())
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = k.n_gpu_layers
        if k.use_mmap is not None or k.use_mlock is not None:
            mp.load_mode = _load_mode(k.use_mmap, k.use_mlock, mp.load_mode)
        self._model = L.llama_model_load_from_file(str(self.path).encode(), mp)
        if not self._model:
            raise EngineError(f"llama.cpp could not load the model {self.path}")
        cp = L.llama_context_default_params()
        cp.n_ctx = k.n_ctx
        cp.n_batch = k.n_batch
        cp.n_ubatch = k.n_ubatch or k.n_batch
        cp.n_seq_max = k.n_seq_max
        self.threads = k.n_threads or compute_threads(pinned=spec.cpus)
        cp.n_threads = self.threads
        cp.n_threads_batch = k.n_threads_batch or self.threads
        cp.kv_unified = True  # sequences share one cache, as in llama.cpp's parallel example
        cp.no_perf = True
        if k.flash_attn is not None:
            cp.flash_attn_type = 1 if k.flash_attn else 0
        self._samplers: list = []
        if k.backend_sampling:  # one greedy chain per sequence, ours to free after the context
            configs = (L.llama_sampler_seq_config * k.n_seq_max)()
            for seq in range(k.n_seq_max):
                chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
                self._samplers.append(chain)
                configs[seq].seq_id = seq
                configs[seq].sampler = ctypes.cast(chain, ctypes.c_void_p)
            cp.samplers, cp.n_samplers = configs, k.n_seq_max
        self._ctx = L.llama_init_from_model(self._model, cp)
        if not self._ctx:
            self._free_samplers()
            L.llama_model_free(self._model)
            raise OutOfMemory(
                f"llama.cpp could not create a context (n_ctx={k.n_ctx}, "
                f"n_seq_max={k.n_seq_max}): out of memory?"
            )
        self._mem = L.llama_get_memory(self._ctx)
        self._n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self._model))
        # The logits view and its address: reading the address off the view costs 1 us a step.
        self._logits_at, self._logits = 0, np.empty((0, self._n_vocab), dtype=np.float32)
        self._batch = L.llama_batch_init(k.n_batch, 0, 1)
        size = k.n_batch
        self._tok = np.ctypeslib.as_array(self._batch.token, shape=(size,))
        self._pos = np.ctypeslib.as_array(self._batch.pos, shape=(size,))
        self._nseq = np.ctypeslib.as_array(self._batch.n_seq_id, shape=(size,))
        self._logit_flags = np.ctypeslib.as_array(self._batch.logits, shape=(size,))
        # Every token's one sequence id lives in one array of ours, written with a slice:
        # llama's per-token arrays would take a ctypes write per token per step.
        self._seq_ids = np.zeros(size, dtype=np.int32)
        addresses = ctypes.cast(self._batch.seq_id, ctypes.POINTER(ctypes.c_size_t))
        self._seq_ptrs = np.ctypeslib.as_array(addresses, shape=(size,))
        self._llama_seq_ptrs = self._seq_ptrs.copy()  # llama's own, restored before it frees them
        self._seq_ptrs[:] = self._seq_ids.ctypes.data + 4 * np.arange(size)
        self._nseq[:] = 1

    @property
    def vocab_size(self) -> int:
        return self._n_vocab

    def describe(self) -> dict:
        k = self.knobs
        return {
            "engine": self.name,
            "llama_cpp_python": L.__version__,
            "model": self.spec.model.name,
            "model_file": self.path.name if self.path else "",
            "model_hash": self.spec.model.hash,
            "n_threads": self.threads,
            "n_gpu_layers": k.n_gpu_layers,
            "n_ctx": k.n_ctx,
            "n_batch": k.n_batch,
            "system_info": L.llama_print_system_info().decode(errors="replace").strip(),
            **({"compute_threads": self.threads} if k.n_gpu_layers == 0 else {}),
            **({"backend_sampling": True} if k.backend_sampling else {}),
            **({"slowdown": k.slowdown} if k.slowdown else {}),
        }

    def warmup(self) -> None:
        """One tiny decode, so that thread pools and buffers exist before round one."""
        self.run_round(probe_workload(), Strategy.SEQUENTIAL, 1)

    def _decode(self, n: int) -> None:
        self._batch.n_tokens = n
        start = time.perf_counter()
        rc = L.llama_decode(self._ctx, self._batch)
        if rc == 1:
            raise OutOfMemory(
                f"llama.cpp found no KV cache slot for the batch "
                f"(n_ctx={self.knobs.n_ctx}): the batch does not fit"
            )
        if rc != 0:
            raise EngineError(f"llama_decode failed with code {rc}")
        if self.knobs.slowdown > 0:
            end = time.perf_counter()
            deadline = end + self.knobs.slowdown * (end - start)
            while time.perf_counter() < deadline:
                pass

    def run_round(self, workload: Workload, strategy: Strategy, batch_size: int):
        k = self.knobs
        if batch_size > k.n_seq_max:
            raise OutOfMemory(
                f"batch size {batch_size} exceeds the profile's n_seq_max={k.n_seq_max}"
            )
        need = max(r.prompt_len + r.max_output_tokens for r in workload.requests)
        if need > k.n_ctx:
            raise EngineError(f"a request needs {need} positions but n_ctx is {k.n_ctx}")
        L.llama_memory_clear(self._mem, True)
        rnd = Round(workload, strategy, batch_size)
        free = list(range(rnd.scheduler.batch_size - 1, -1, -1))
        active: dict[int, _Seq] = {}

        def start(r: Request) -> None:
            active[free.pop()] = _Seq(r, list(r.prompt_tokens))

        def step() -> None:
            outputs, n = self._fill_batch(active)
            self._decode(n)
            sampled = self._sample(len(outputs), n)
            t = rnd.clock()
            for seq, tok in zip(outputs, sampled.tolist(), strict=True):
                st = active[seq]
                st.generated += 1
                rnd.tokens(st.request.id, t)
                if st.generated >= st.request.max_output_tokens:
                    rnd.finish(st.request.id, t)
                    L.llama_memory_seq_rm(self._mem, seq, -1, -1)
                    del active[seq]
                    free.append(seq)
                else:
                    st.pending = [tok]

        run_steps(rnd, start, step)
        return rnd.trace()

    def _fill_batch(self, active: dict[int, _Seq]) -> tuple[list[int], int]:
        """Pack the batch: decoding sequences first (one token each), then prompt chunks.

        Returns the sequence ids whose logits this batch yields, in batch order, and the
        number of tokens packed."""
        cap = self.knobs.n_batch
        decoding = [(seq, st) for seq, st in active.items() if st.generated][:cap]
        n = len(decoding)
        outputs = [seq for seq, _ in decoding]
        if n:  # one token each, all of them sampled: written a column at a time
            self._tok[:n] = [st.pending[0] for _, st in decoding]
            self._pos[:n] = [st.pos for _, st in decoding]
            self._seq_ids[:n] = outputs
            self._logit_flags[:n] = 1
            for _, st in decoding:
                st.pos += 1
                st.pending = []
        for seq, st in active.items():
            if n >= cap:
                break
            if st.generated:
                continue
            take = st.pending[: cap - n]
            k = len(take)
            self._tok[n : n + k] = take
            self._pos[n : n + k] = np.arange(st.pos, st.pos + k)
            self._seq_ids[n : n + k] = seq
            self._logit_flags[n : n + k] = 0
            st.pos += k
            st.pending = st.pending[k:]
            if not st.pending:  # the whole prompt is in: sample after it
                self._logit_flags[n + k - 1] = 1
                outputs.append(seq)
            n += k
        return outputs, n

    def _sample(self, rows: int, n: int) -> np.ndarray:
        """The greedy token of each of the batch's ``rows`` outputs (of ``n`` tokens)."""
        if not rows:
            return np.empty(0, dtype=int)
        if self._samplers:  # sampled in the graph; read by batch position
            outputs = np.flatnonzero(self._logit_flags[:n]).tolist()
            tokens = np.array([L.llama_get_sampled_token_ith(self._ctx, i) for i in outputs])
            if (tokens < 0).any():  # LLAMA_TOKEN_NULL: that output was not sampled
                raise EngineError("llama.cpp's backend sampler returned no token for an output")
            return tokens
        ptr = L.llama_get_logits(self._ctx)
        at = ctypes.addressof(ptr.contents)
        if at != self._logits_at:  # llama.cpp moves its output buffer when it grows it
            # A view of n_batch rows (a step's most); only the step's own rows are read.
            self._logits = np.ctypeslib.as_array(ptr, shape=(self.knobs.n_batch, self._n_vocab))
            self._logits_at = at
        return self._logits[:rows].argmax(axis=1)

    def _free_samplers(self) -> None:
        for chain in self._samplers:
            L.llama_sampler_free(chain)
        self._samplers = []

    def close(self) -> None:
        if getattr(self, "_ctx", None):
            self._seq_ptrs[:] = self._llama_seq_ptrs
            L.llama_batch_free(self._batch)
            L.llama_free(self._ctx)
            self._free_samplers()
            L.llama_model_free(self._model)
            self._ctx = None
