"""Progress lines for long cases: one per case start with -v, otherwise rate-limited,
never carriage returns."""

from helpers.sim import run_sim

from pytest_batchperf.plan import Side, Slot
from pytest_batchperf.progress import Progress


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _drive(progress, clock, rounds, seconds_per_round):
    def fn():
        clock.t += seconds_per_round

    progress.rounds(None)(fn, rounds)


def test_quiet_for_short_cases_then_rate_limited_for_long_ones():
    lines, clock = [], Clock()
    p = Progress(lines.append, total=3, interval_s=30, clock=clock)
    p.start("t.py::short[B1]", 1, "static", 5)
    _drive(p, clock, 5, 1.0)
    p.finish()
    assert lines == []  # 5 s: nothing beyond pytest's own dot
    p.start("t.py::long[B64]", 64, "continuous", 10)
    _drive(p, clock, 10, 20.0)  # 200 s in rounds of 20 s: a line per 30 s at most
    p.finish()
    assert 4 <= len(lines) <= 7
    assert (
        lines[0]
        == "batchperf [1/3 cases done] t.py::long[B64]: batch size 64, continuous, round 2/10"
    )
    assert not any("\r" in line for line in lines)


def test_verbose_prints_each_case_start():
    lines, clock = [], Clock()
    p = Progress(lines.append, total=2, verbose=1, clock=clock)
    for i in range(2):
        p.start(f"t.py::c[B{i}]", i + 1, "static", 3)
        _drive(p, clock, 3, 0.1)
        p.finish()
    assert lines == [
        "batchperf [0/2 cases done] t.py::c[B0]: batch size 1, static, 3 rounds after warm-up",
        "batchperf [1/2 cases done] t.py::c[B1]: batch size 2, static, 3 rounds after warm-up",
    ]


def test_wraps_pytest_benchmark_driver():
    calls, lines, clock = [], [], Clock()
    p = Progress(lines.append, total=1, interval_s=0, clock=clock)
    p.start("c", 1, "static", 2)

    def pedantic(fn, rounds):
        calls.append(rounds)
        for _ in range(rounds):
            fn()

    p.rounds(pedantic)(lambda: None, 2)
    assert calls == [2] and [line[-9:] for line in lines] == ["round 1/2", "round 2/2"]


def test_names_the_run_of_a_case_with_several():
    """A case runs in several engine processes (and in A/B, on two sides): the line says
    which; the first candidate run reads as before."""
    lines, clock = [], Clock()
    p = Progress(lines.append, total=1, verbose=1, clock=clock)
    for slot in (Slot(1), Slot(2), Slot(1, Side.REFERENCE)):
        p.start("t.py::c[B8]", 8, "static", 3, slot)
    assert [line.split(": ", 1)[1] for line in lines] == [
        "batch size 8, static, 3 rounds after warm-up",
        "batch size 8, static, run 2, 3 rounds after warm-up",
        "batch size 8, static, run 1 (reference), 3 rounds after warm-up",
    ]


def test_progress_reaches_the_terminal_through_capture(sim_project):
    p = sim_project()
    result = run_sim(p, "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "batchperf [[]0/4 cases done] test_suite.py::test_sweep[[]B2-static]: batch size 2, static, 5 rounds*",
            "batchperf [[]3/4 cases done] test_suite.py::test_sweep[[]B8-continuous]*",
        ]
    )
    quiet = run_sim(p)
    assert "cases done" not in quiet.stdout.str()


def test_in_passes_the_counter_counts_runs_and_never_passes_its_total(sim_project):
    p = sim_project()
    result = run_sim(p, "-v", "--batchperf-runs", "2")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "batchperf [[]0/8 runs done] test_suite.py::test_sweep[[]B2-static]*",
            "batchperf [[]7/8 runs done] test_suite.py::test_sweep[[]B8-continuous]: *run 2*",
        ]
    )
