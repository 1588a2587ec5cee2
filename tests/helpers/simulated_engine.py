"""SimulatedEngine: a FAKE engine for unit tests of the plugin's own logic only.

It runs the real round loop (the kit's ``run_steps`` and the Scheduler) on a virtual clock
with a simple cost model (a fixed cost per step plus a cost per token in the batch, times
seeded lognormal noise), so tests of the statistics, baselines, passes and reports are fast
and independent of machine load. It never stands in for a real engine: end-to-end tests
use the llama-cpp engine.

Knobs: step_ms, token_ms, noise (lognormal sigma per round), process_noise (lognormal sigma
per engine instance: the offset a fresh process brings), slowdown (fraction), seed (of the
noise, with the instance's number; default: the pid), factors (time multipliers applied to successive
rounds in turn, for exactly reproducible round-to-round spread), oom_above (batch sizes
above it do not fit), empty_at (a batch size whose rounds produce no tokens: a trace that
cannot be summarised), log (a file each round appends "instance strategy batch_size" to),
busy_flag (a file: while it exists, rounds take twice as long, as under other work).
"""

from __future__ import annotations

import itertools
import os

import numpy as np

from pytest_batchperf.engines import Engine, OutOfMemory
from pytest_batchperf.engines.kit import Round, run_steps

_instances = itertools.count()


class SimulatedEngine(Engine):
    name = "simulated"

    def __init__(self, spec):
        o = dict(spec.knobs)
        self.step_s = float(o.get("step_ms", 2.0)) / 1e3
        self.token_s = float(o.get("token_ms", 0.25)) / 1e3
        self.noise = float(o.get("noise", 0.02))
        self.slowdown = float(o.get("slowdown", 0.0))
        self.oom_above = o.get("oom_above")
        self.empty_at = o.get("empty_at")
        self.log = o.get("log")
        self.busy_flag = o.get("busy_flag")
        self.instance = next(_instances)
        self.factors = itertools.cycle([float(f) for f in o.get("factors", [1.0])])
        seed = o.get("seed")
        # Each instance (a fresh "process") draws its own noise, reproducibly given a seed.
        self._rng = np.random.default_rng(
            [seed if seed is not None else os.getpid(), self.instance]
        )
        self.offset = float(self._rng.lognormal(0, float(o.get("process_noise", 0.0))))
        self._t = 0.0

    @property
    def vocab_size(self) -> int:
        return 512

    def pids(self) -> list[int]:
        # No process of its own: in-process, the RSS would be pytest's, which grows as
        # earlier pytester runs import report code, and would fail A/A runs on memory.
        return []

    def describe(self) -> dict:
        return {"engine": self.name, "step_ms": self.step_s * 1e3, "model_hash": "simulated"}

    def run_round(self, workload, strategy, batch_size):
        if self.oom_above is not None and batch_size > self.oom_above:
            raise OutOfMemory(
                f"batch size {batch_size} is above the simulated limit {self.oom_above}"
            )
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{self.instance} {strategy.value} {batch_size}\n")
        busy = 2.0 if self.busy_flag and os.path.exists(self.busy_flag) else 1.0
        factor = (
            busy
            * (1 + self.slowdown)
            * self.offset
            * next(self.factors)
            * self._rng.lognormal(0, self.noise)
        )
        # Each round's virtual clock starts at 0: arrival offsets then compare exactly.
        self._t = 0.0
        clock = lambda: self._t
        rnd = Round(workload, strategy, batch_size, clock)
        active: dict[int, list] = {}  # id -> [request, prompt left, generated]

        def start(r):
            active[r.id] = [r, r.prompt_len, 0]

        def step():
            tokens = sum(a[1] or 1 for a in active.values())
            self._t += (self.step_s + self.token_s * tokens) * factor
            for rid, a in list(active.items()):
                a[1] = 0
                a[2] += 1
                rnd.tokens(rid, self._t)
                if a[2] >= a[0].max_output_tokens:
                    rnd.finish(rid, self._t)
                    del active[rid]

        def sleep(seconds):
            self._t += seconds

        run_steps(rnd, start, step, sleep)
        trace = rnd.trace()
        if batch_size == self.empty_at:
            for r in trace.requests:
                r.token_times = []
        return trace
