"""Background sampling of memory, GPU utilisation and energy while a round runs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import psutil

from . import nvml


def _family(pids: list[int]) -> list[psutil.Process]:
    procs = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            procs.append(p)
            procs.extend(p.children(recursive=True))
        except psutil.Error:
            continue
    return procs


def rss_mib(pids: list[int], family: list[psutil.Process] | None = None) -> float:
    total = 0
    for p in family if family is not None else _family(pids):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total / (1 << 20)


class ResourceSampler:
    """Peak host RSS and GPU memory, mean GPU utilisation and SM clock, and energy.

    ``pids`` is called at start so an engine that restarted reports its new processes;
    ``gpus`` are the NVML indices the engine computes on (empty: a CPU engine).
    """

    def __init__(
        self, pids: Callable[[], list[int]], gpus: Sequence[int] = (), interval_s: float = 0.02
    ):
        self._pids_fn = pids
        self.interval_s = interval_s
        self.gpus = tuple(gpus)
        self.gpu = bool(gpus) and nvml.available()
        self.peak_rss_mib = 0.0
        self.peak_gpu_mem_mib: float | None = None  # of the sum over the GPUs
        self._gpu_mem_peaks: dict[int, float] = {}  # each GPU's own
        self._util: list[float] = []
        self._clock: list[float] = []
        self._energy0: dict[int, float] | None = None
        self._energy1: dict[int, float] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self, pids: list[int], procs: list[psutil.Process] | None = None) -> None:
        procs = _family(pids) if procs is None else procs
        self.peak_rss_mib = max(self.peak_rss_mib, rss_mib(pids, procs))
        if not self.gpu:
            return
        mem = nvml.process_memory_by_gpu({p.pid for p in procs}, self.gpus)
        if mem is None:  # containers often hide per-process attribution: device-wide then
            mem = nvml.used_memory_by_gpu(self.gpus)
        if mem is not None:
            self.peak_gpu_mem_mib = max(self.peak_gpu_mem_mib or 0.0, sum(mem.values()))
            for i, mib in mem.items():
                self._gpu_mem_peaks[i] = max(self._gpu_mem_peaks.get(i, 0.0), mib)
        util = nvml.utilization_pct(self.gpus)
        if util is not None:
            self._util.append(util)
        clock = nvml.clock_state(self.gpus[0])
        if clock is not None:
            self._clock.append(clock.sm_mhz)

    def _loop(self, pids: list[int]) -> None:
        # The process family is found once per round: walking /proc every 20 ms costs the
        # engine CPU time when it shares this process (isolate = false).
        procs = _family(pids)
        while not self._stop.wait(self.interval_s):
            self._sample(pids, procs)

    def __enter__(self) -> ResourceSampler:
        pids = self._pids_fn()
        self._sample(pids)
        if self.gpu:
            self._energy0 = nvml.energy_mj_by_gpu(self.gpus)
        if self.interval_s > 0:
            self._thread = threading.Thread(target=self._loop, args=(pids,), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._sample(self._pids_fn())
        if self.gpu:
            self._energy1 = nvml.energy_mj_by_gpu(self.gpus)

    def metrics(self, output_tokens: float) -> dict[str, float]:
        m = {"peak_rss_mib": self.peak_rss_mib}
        if self.peak_gpu_mem_mib is not None:
            m["peak_gpu_mem_mib"] = self.peak_gpu_mem_mib
        if self._util:
            m["gpu_util_pct"] = sum(self._util) / len(self._util)
        if self._clock:
            m["sm_clock_mhz"] = sum(self._clock) / len(self._clock)
        energy: dict[int, float] = {}
        if self._energy0 is not None and self._energy1 is not None and output_tokens:
            energy = {
                i: (self._energy1[i] - self._energy0[i]) / 1000.0 / output_tokens
                for i in self._energy0
            }
            m["energy_j_per_tok"] = sum(energy.values())
        if len(self.gpus) > 1:  # each GPU beside the sum: an unbalanced split shows
            m.update({f"peak_gpu_mem_mib_gpu{i}": v for i, v in self._gpu_mem_peaks.items()})
            m.update({f"energy_j_per_tok_gpu{i}": v for i, v in energy.items()})
        return m
