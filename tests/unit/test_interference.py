"""Other work on the machine while a run measures is seen and said, not absorbed."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_batchperf.measure.interference import Interference, InterferenceProbe

pytestmark = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads Linux /proc")

BUSY = "import time\nend = time.time() + 4\nwhile time.time() < end: pass\n"
# Started through a short-lived middle process, so that the neighbour is not our child:
# our own children are ours, not foreign.
DETACHED = (
    "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', sys.argv[1]], "
    "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)"
)


def test_a_busy_neighbour_shows_as_foreign_cpu_time():
    pid = int(
        subprocess.run(
            [sys.executable, "-c", DETACHED, BUSY], capture_output=True, text=True, check=True
        ).stdout
    )
    try:
        time.sleep(0.3)
        with InterferenceProbe() as probe:
            time.sleep(1.5)  # we do nothing; the neighbour spins one core
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    r = probe.result
    assert r is not None
    # One core of the usable ones is busy with somebody else's work.
    assert r.foreign_cpu_pct >= 0.5 * 100 / r.usable_cores
    assert any("other processes used" in w for w in r.warnings())


def test_our_own_cpu_time_is_not_foreign(monkeypatch):
    """Recorded readings: 2 s of wall time on 2 cores; the machine was busy 3 s, 2.5 s of
    them ours (this process and the engine's), and our threads waited 0.4 s for a CPU."""
    from pytest_batchperf.measure import interference as mod

    stat = iter([(100.0, 1.0), (103.0, 1.1)])
    ours = iter([(50.0, {(1, 1): 0.0, (1, 2): 0.0}), (52.5, {(1, 1): 0.3, (1, 2): 0.1})])
    clock = iter([10.0, 12.0])  # 2 s: long enough to count
    monkeypatch.setattr(mod, "_cpu_stat", lambda cpus: next(stat))
    monkeypatch.setattr(mod, "_ours", lambda procs: next(ours))
    monkeypatch.setattr(mod, "usable_cores", lambda cpus=None: 2)
    monkeypatch.setattr(mod, "_family", lambda: [])
    with InterferenceProbe(clock=lambda: next(clock)) as probe:
        pass
    r = probe.result
    assert r.foreign_cpu_pct == pytest.approx(100 * 0.5 / 4)
    assert r.steal_pct == pytest.approx(100 * 0.1 / 4)
    assert r.runqueue_wait_pct == pytest.approx(100 * 0.4 / 2)


def test_thresholds_make_warnings():
    quiet = Interference(1.0, 2, 1.0, 0.0, 2.0, 0.5)
    assert quiet.warnings() == []
    loud = Interference(1.0, 2, 40.0, 9.0, 60.0, 3.0)
    assert len(loud.warnings()) == 3
    assert Interference(**loud.to_dict()) == loud
