"""Other work on the machine while a run measured: said out loud, never absorbed silently.

Over the measured rounds of a run this reads, from /proc (Linux; elsewhere nothing):
- CPU time spent by processes other than ours on the CPUs we may use, as a share of
  those CPUs (``/proc/stat`` busy time minus our own processes' CPU time);
- hypervisor steal on those CPUs (``/proc/stat``);
- how long our threads (pytest and the engine's process tree) sat runnable but waiting for
  a CPU (``/proc/<pid>/task/<tid>/schedstat``, second field), per second of wall time:
  other work, or more engine threads than free cores;
- the load average.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

# Above these a run's timings are suspect and the case says why.
FOREIGN_CPU_PCT = 10.0
# /proc/stat counts in ticks of 10 ms: shorter runs give no reliable shares.
MIN_WALL_S = 0.5
STEAL_PCT = 5.0
# Our own threads (pytest's sampler, the engine's workers) contend on a quiet small runner
# too (docs/results/cpu-gate.md): only well above that is the wait other work's.
RUNQUEUE_WAIT_PCT = 35.0
# How long a re-measurement waits for other work to end before it measures anyway.
QUIET_WAIT_S = 60.0


@dataclass(frozen=True)
class Interference:
    wall_s: float
    usable_cores: float
    foreign_cpu_pct: float  # other processes' CPU time, % of the usable cores
    steal_pct: float  # hypervisor steal, % of the usable cores
    runqueue_wait_pct: float  # our threads' wait for a CPU, thread-seconds per 100 s of wall
    load_avg: float  # 1-minute load average at the end

    def warnings(self) -> list[str]:
        out = []
        if self.foreign_cpu_pct > FOREIGN_CPU_PCT:
            out.append(
                f"other processes used {self.foreign_cpu_pct:.0f}% of the "
                f"{self.usable_cores:g} usable cores while this run measured"
            )
        if self.steal_pct > STEAL_PCT:
            out.append(f"the hypervisor stole {self.steal_pct:.0f}% of the CPU time")
        if self.runqueue_wait_pct > RUNQUEUE_WAIT_PCT:
            out.append(
                f"our threads waited for a CPU {self.runqueue_wait_pct:.0f}% of the "
                "time (other work, or more engine threads than free cores)"
            )
        return out

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in asdict(self).items()}


def usable_cores(cpus: set[int] | None = None) -> float:
    """CPUs this process may use (``cpus``, else its affinity), capped by a cgroup v2 CPU
    quota."""
    if cpus is None and hasattr(os, "sched_getaffinity"):
        cpus = os.sched_getaffinity(0)
    cores: float = len(cpus) if cpus is not None else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, int(quota) / int(period))
    except (OSError, ValueError):
        pass
    return cores


def _cpu_stat(cpus: set[int]) -> tuple[float, float]:
    """(busy, steal) seconds summed over ``cpus`` since boot."""
    busy = steal = 0
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            name, *fields = line.split()
            if int(name[3:]) not in cpus:
                continue
            v = [int(x) for x in fields]
            busy += v[0] + v[1] + v[2] + v[5] + v[6]  # user nice system irq softirq
            steal += v[7] if len(v) > 7 else 0
    return busy / tick, steal / tick


def _family() -> list[psutil.Process]:
    me = psutil.Process()
    try:
        return [me, *me.children(recursive=True)]
    except psutil.Error:
        return [me]


def _ours(procs: list[psutil.Process]) -> tuple[float, dict[tuple[int, int], float]]:
    """CPU seconds of ``procs``, and each thread's runqueue wait in seconds."""
    cpu = 0.0
    waits: dict[tuple[int, int], float] = {}
    for p in procs:
        try:
            t = p.cpu_times()
            cpu += t.user + t.system
        except psutil.Error:
            continue
        try:
            for tid in os.listdir(f"/proc/{p.pid}/task"):
                with open(f"/proc/{p.pid}/task/{tid}/schedstat") as f:
                    waits[(p.pid, int(tid))] = int(f.read().split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            continue
    return cpu, waits


class InterferenceProbe:
    """``with InterferenceProbe() as probe: ...`` then ``probe.result`` (None off Linux)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, cpus: set[int] | None = None):
        self.clock = clock
        self.result: Interference | None = None
        self._on = Path("/proc/stat").exists() and hasattr(os, "sched_getaffinity")
        self._given = cpus  # the job's CPUs, where this thread is pinned to a part of them

    def __enter__(self) -> InterferenceProbe:
        if self._on:
            self._cpus = set(self._given or os.sched_getaffinity(0))
            self._t0 = self.clock()
            self._stat0 = _cpu_stat(self._cpus)
            self._ours0 = _ours(_family())
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._on or exc[0] is not None:
            return
        wall = self.clock() - self._t0
        if wall < MIN_WALL_S:
            return
        busy1, steal1 = _cpu_stat(self._cpus)
        cpu1, waits1 = _ours(_family())
        cpu0, waits0 = self._ours0
        cores = usable_cores(self._cpus)
        capacity = max(wall * cores, 1e-9)
        foreign = max(0.0, (busy1 - self._stat0[0]) - (cpu1 - cpu0))
        waited = sum(w - waits0.get(key, 0.0) for key, w in waits1.items())
        self.result = Interference(
            wall_s=wall,
            usable_cores=cores,
            foreign_cpu_pct=100 * foreign / capacity,
            steal_pct=100 * (steal1 - self._stat0[1]) / capacity,
            runqueue_wait_pct=100 * max(0.0, waited) / max(wall, 1e-9),
            load_avg=os.getloadavg()[0],
        )


def wait_for_quiet(
    timeout_s: float = QUIET_WAIT_S,
    window_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Wait until a ``window_s`` window sees no interference (True), or ``timeout_s`` has
    passed (False); True at once where the probe reads nothing (off Linux)."""
    deadline = clock() + timeout_s
    while True:
        with InterferenceProbe(clock) as probe:
            sleep(window_s)
        if probe.result is None or not probe.result.warnings():
            return True
        if clock() >= deadline:
            return False
