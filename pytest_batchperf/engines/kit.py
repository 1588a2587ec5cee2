"""What every adapter shares: the round loop, written once.

A round is the Scheduler's admissions (``workload.strategies``), a wait until the next
arrival when nothing runs, and the engine's own work in between. ``Round`` keeps the
bookkeeping (when each request was due and taken, its token times, how many are in
flight); ``run_steps`` drives an engine that advances in steps (llama.cpp's decode, vLLM's
``step()``, one ``generate`` per wave), ``run_tasks`` one that streams each request on its
own asyncio task (a server, vLLM's AsyncLLM). An adapter supplies only how to start a
request and how to advance.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from ..measure.trace import RequestTrace, RoundTrace, now
from ..workload.spec import Request, Workload
from ..workload.strategies import Scheduler, Strategy


class Round:
    """One round's admissions and traces. Times come from ``clock`` (perf_counter, or a
    fake engine's virtual clock)."""

    def __init__(
        self,
        workload: Workload,
        strategy: Strategy,
        batch_size: int,
        clock: Callable[[], float] = now,
    ):
        self.scheduler = Scheduler(workload.requests, strategy, batch_size)
        self.clock = clock
        self.t0 = clock()
        self.traces = {
            r.id: RequestTrace(r.id, r.prompt_len, self.t0 + r.arrival_s, priority=r.priority)
            for r in workload.requests
        }
        self.in_flight = 0

    def admit(self) -> list[Request]:
        """The requests the strategy starts now, each stamped as taken."""
        t = self.clock()
        started = self.scheduler.admit(t - self.t0, self.in_flight)
        for r in started:
            self.traces[r.id].scheduled = t
        self.in_flight += len(started)
        return started

    def tokens(self, request_id: int, t: float, n: int = 1) -> None:
        self.traces[request_id].token_times.extend([t] * n)

    def finish(self, request_id: int, t: float | None = None) -> None:
        trace = self.traces[request_id]
        trace.finished = (
            t if t is not None else (trace.token_times[-1] if trace.token_times else self.clock())
        )
        self.in_flight -= 1

    def wait_s(self) -> float | None:
        """Seconds until the strategy could admit more with nothing finishing first;
        None when only a finish can (or nothing is left)."""
        elapsed = self.clock() - self.t0
        wake = self.scheduler.next_wakeup(elapsed)
        return None if wake is None or wake <= elapsed else wake - elapsed

    @property
    def done(self) -> bool:
        return self.scheduler.done and self.in_flight == 0

    def trace(self, stats: dict[str, float] | None = None) -> RoundTrace:
        return RoundTrace(
            start=self.t0,
            end=self.clock(),
            requests=list(self.traces.values()),
            waves=self.scheduler.waves,
            stats=stats or {},
        )


def run_steps(
    rnd: Round,
    start: Callable[[Request], None],
    step: Callable[[], None],
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Admit, start what was admitted, and ``step()`` while anything is in flight; sleep
    until the next arrival when nothing is. ``step`` calls ``rnd.finish`` as requests end."""
    while True:
        for r in rnd.admit():
            start(r)
        if rnd.in_flight:
            step()
        elif rnd.scheduler.done:
            return
        else:
            sleep(rnd.wait_s() or 0.0)


async def run_tasks(rnd: Round, start: Callable[[Request], Awaitable[None]]) -> None:
    """Each admitted request streams on its own task; a finished task frees its slot. The
    first failed request fails the round (the others are cancelled)."""
    running: dict[asyncio.Task, Request] = {}
    try:
        while not rnd.scheduler.done or running:
            for r in rnd.admit():
                running[asyncio.ensure_future(start(r))] = r
            wait = rnd.wait_s()
            if running:
                done, _ = await asyncio.wait(
                    running, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    r = running.pop(task)
                    rnd.finish(r.id)
                    task.result()
            else:
                await asyncio.sleep(max(wait or 0.0, 0.0005))
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)


def probe_workload(outputs: tuple[int, ...] = (2,), prompt: int = 8) -> Workload:
    """A tiny workload for warm-ups and probes: ``len(outputs)`` short requests."""
    return Workload(
        None, tuple(Request(i, tuple(range(5, 5 + prompt)), n) for i, n in enumerate(outputs))
    )
