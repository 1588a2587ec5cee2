"""The Scheduler's admission rules, as properties (Hypothesis) over random workloads."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_batchperf.workload.spec import Request
from pytest_batchperf.workload.strategies import Scheduler, Strategy

EPS = 1e-9

requests = st.lists(
    st.tuples(st.integers(1, 40), st.integers(1, 20), st.floats(0, 2, allow_nan=False)),
    min_size=1,
    max_size=30,
).map(lambda rows: [Request(i, tuple(range(p)), o, a) for i, (p, o, a) in enumerate(rows)])


def simulate(reqs, strategy, batch, step_s=0.01, max_wait_ms=50.0):
    """Drive the scheduler as an engine would: each step takes ``step_s`` and finishes the
    requests that have produced all their tokens. Returns (admissions, in-flight samples,
    per-request start and end times)."""
    sched = Scheduler(reqs, strategy, batch, max_wait_ms=max_wait_ms)
    now, left, started, ended, peaks, admitted = 0.0, {}, {}, {}, [], []
    for _ in range(100000):
        for r in sched.admit(now, len(left)):
            admitted.append((now, r))
            started[r.id] = now
            left[r.id] = r.max_output_tokens
        peaks.append(len(left))
        if left:
            now += step_s
            for rid in list(left):
                left[rid] -= 1
                if not left[rid]:
                    ended[rid] = now
                    del left[rid]
        elif sched.done:
            break
        else:
            now = sched.next_wakeup(now)
    return sched, admitted, peaks, started, ended


@settings(max_examples=200, deadline=None)
@given(requests, st.sampled_from(list(Strategy)), st.integers(1, 8))
def test_never_more_than_b_in_flight_and_each_admitted_once(reqs, strategy, batch):
    sched, admitted, peaks, _, _ = simulate(reqs, strategy, batch)
    limit = 1 if strategy is Strategy.SEQUENTIAL else batch
    assert max(peaks) <= limit
    assert sorted(r.id for _, r in admitted) == [r.id for r in reqs]
    # nothing starts before it arrives (to a nanosecond: times are float sums)
    assert all(now >= r.arrival_s - EPS for now, r in admitted)
    assert sched.done


@settings(max_examples=200, deadline=None)
@given(requests, st.sampled_from([Strategy.STATIC, Strategy.BUCKETED]), st.integers(1, 8))
def test_a_static_wave_waits_for_all_its_members(reqs, strategy, batch):
    sched, admitted, _, started, ended = simulate(reqs, strategy, batch)
    for i, wave in enumerate(sched.waves):
        start = started[wave[0].id]
        assert all(started[r.id] == start for r in wave)  # one wave, one start
        assert start >= max(r.arrival_s for r in wave) - EPS  # after its last member arrived
        if i:
            assert start >= max(ended[r.id] for r in sched.waves[i - 1])  # after the last wave


@settings(max_examples=200, deadline=None)
@given(requests, st.integers(2, 8), st.sampled_from([10.0, 50.0]))
def test_dynamic_batching_dispatches_at_max_wait(reqs, batch, max_wait_ms):
    sched, admitted, _, started, ended = simulate(
        reqs, Strategy.DYNAMIC, batch, max_wait_ms=max_wait_ms
    )
    wait = max_wait_ms / 1e3
    free_at = 0.0  # when the engine finished the previous wave
    for wave in sched.waves:
        start, oldest = started[wave[0].id], min(r.arrival_s for r in wave)
        full = len(wave) == batch
        # An idle engine sends a wave once it is full or its oldest request waited
        # max_wait (or no more requests can come): never later, never earlier.
        deadline = max(oldest + wait, free_at)
        assert start <= deadline + EPS
        if not full and any(r.id not in {w.id for w in wave} and r.arrival_s > start for r in reqs):
            assert start >= oldest + wait - EPS
        free_at = max(ended[r.id] for r in wave)


def test_dynamic_waits_no_longer_than_max_wait_when_idle():
    reqs = [Request(0, (1,), 1, 0.0), Request(1, (1,), 1, 5.0)]
    sched, admitted, _, started, _ = simulate(reqs, Strategy.DYNAMIC, 4, max_wait_ms=50.0)
    assert abs(started[0] - 0.05) < 1e-9  # alone, after 50 ms: the batch never filled
