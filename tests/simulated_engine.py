"""SimulatedEngine: a FAKE engine for unit tests of the plugin's own logic only.

It runs the real Scheduler on a virtual clock with a simple cost model (a fixed cost
per step plus a cost per token in the batch, times seeded lognormal noise), so tests of
the decision rule, baselines and reports are fast and independent of machine load. It
never stands in for a real engine: end-to-end tests use the llama-cpp engine.

Knobs: step_ms, token_ms, noise (lognormal sigma per round), slowdown (fraction),
seed (of the noise; default: a new one per process), factors (a list of time multipliers
applied to successive rounds in turn, for exactly reproducible round-to-round spread).
"""

from __future__ import annotations

import itertools
import os

import numpy as np

from pytest_batchperf.engines.base import Engine, RequestTrace, RoundTrace
from pytest_batchperf.strategies import Scheduler

_rounds = itertools.count()


class SimulatedEngine(Engine):
    name = "simulated"

    def __init__(self, profile):
        o = dict(profile.options)
        self.step_s = float(o.get("step_ms", 2.0)) / 1e3
        self.token_s = float(o.get("token_ms", 0.25)) / 1e3
        self.noise = float(o.get("noise", 0.02))
        self.slowdown = float(o.get("slowdown", 0.0))
        self.factors = itertools.cycle([float(f) for f in o.get("factors", [1.0])])
        seed = o.get("seed")
        self._rng = np.random.default_rng(seed if seed is not None else [os.getpid(), next(_rounds)])

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
        factor = (1 + self.slowdown) * next(self.factors) * self._rng.lognormal(0, self.noise)
        sched = Scheduler(workload.requests, strategy, batch_size)
        t0 = 1000.0 + next(_rounds)
        # The virtual clock counts from t0: (t0 + arrival) - t0 can round below the arrival,
        # and the scheduler would then never see that request arrive.
        now = 0.0
        traces = {r.id: RequestTrace(r.id, r.prompt_len, t0 + r.arrival_s) for r in workload.requests}
        active = {}  # id -> [request, prompt left, generated]
        while True:
            for r in sched.admit(now, len(active)):
                traces[r.id].scheduled = t0 + now
                active[r.id] = [r, r.prompt_len, 0]
            if not active:
                if sched.done:
                    break
                now = sched.next_wakeup(now)
                continue
            tokens = sum(a[1] or 1 for a in active.values())
            now += (self.step_s + self.token_s * tokens) * factor
            for rid, a in list(active.items()):
                a[1] = 0
                a[2] += 1
                traces[rid].token_times.append(t0 + now)
                if a[2] >= a[0].max_output_tokens:
                    traces[rid].finished = t0 + now
                    del active[rid]
        return RoundTrace(t0, t0 + now, list(traces.values()), waves=sched.waves)
