"""The session's parts on their own: the engine pool and the case runner (on the
SimulatedEngine, a FAKE engine for the plugin's logic, in this process), the capacity
verdict and the run summary's pure functions."""

import sys
from pathlib import Path

import pytest

from pytest_batchperf.case_runner import CaseRunner
from pytest_batchperf.engine_pool import EnginePool
from pytest_batchperf.engines.base import EngineError, EngineSpec
from pytest_batchperf.judge import gate
from pytest_batchperf.judge.capacity import Fit, capacity_verdict
from pytest_batchperf.judge.decision import Verdict
from pytest_batchperf.judge.results import CaseResult, MetricRuns, RunResults
from pytest_batchperf.measure.runner import Rounds
from pytest_batchperf.plan import Plan, Side, Slot
from pytest_batchperf.prepared import Prepared
from pytest_batchperf.profiles import Profile
from pytest_batchperf.records import Action, CaseSettings
from pytest_batchperf.run_summary import largest_fitting, missing
from pytest_batchperf.workload import CaseSpec, Strategy, WorkloadSpec, fixed

sys.path.insert(0, str(Path(__file__).parents[1] / "helpers"))
FAKE = "simulated_engine:SimulatedEngine"


def _pool(engine=FAKE, **knobs):
    profile = Profile("sim", engine, isolate=False)
    spec = EngineSpec("sim", engine, knobs=knobs)
    return EnginePool({Side.CANDIDATE: profile}, {Side.CANDIDATE: spec})


def test_a_slot_keeps_its_engine_and_the_next_slot_gets_a_fresh_one():
    pool = _pool()
    first = pool.engine_for(Slot(1), "a")
    assert pool.engine_for(Slot(1), "b") is first  # every case of the slot
    second = pool.engine_for(Slot(2), "a")
    assert second is not first
    extension = pool.engine_for(Slot(3, extension=True), "a")  # a case's own extra run
    assert pool.engine_for(Slot(3, extension=True), "b") is not extension
    assert pool.info[Side.CANDIDATE]["engine"] == "simulated"
    pool.close()


def test_a_slot_whose_engine_failed_to_start_is_not_retried():
    pool = _pool("no_such_module_anywhere:Engine")
    with pytest.raises(EngineError, match="failed to start") as first:
        pool.engine_for(Slot(1), "a")
    with pytest.raises(EngineError) as again:
        pool.engine_for(Slot(1), "b")
    assert again.value is first.value


def _case(cid, size, metrics=True):
    spec = CaseSpec(WorkloadSpec(num_requests=8), Strategy.STATIC, size)
    m = {"output_tok_s": MetricRuns.build("output_tok_s", [[1.0]])} if metrics else {}
    return CaseResult(cid, "sweep", spec, m)


def test_the_largest_size_that_fitted_below_the_first_that_did_not():
    cases = {c.case_id: c for c in (_case("f::t[B2]", 2), _case("f::t[B8]", 8))}
    too_big = _case("f::t[B32]", 32)
    infeasible = {too_big.case_id: ("sweep", too_big.spec, "out of memory")}
    assert largest_fitting(infeasible, cases) == {"f::t[B8]": 8}
    assert largest_fitting({}, cases) == {}


def test_missing_cases_are_those_of_the_files_this_run_measured():
    baseline = {cid: _case(cid, 2) for cid in ("a.py::x", "a.py::y", "b.py::z")}
    assert missing(baseline, {"a.py::x": baseline["a.py::x"]}, {}) == ("a.py::y",)


def test_capacity_verdicts():
    assert capacity_verdict(8, None, None, True, False, False) is None  # it fitted
    lost = capacity_verdict(8, "out of memory", None, True, False, False)
    assert lost.fit is Fit.REGRESSED and "fitted in the baseline" in lost.message
    assert lost.comparison.verdict is Verdict.REGRESSED and lost.comparison.reference == 8
    beyond = capacity_verdict(8, "out of memory", None, False, False, False)
    assert beyond.fit is Fit.SKIP  # the baseline did not run it either: the sweep's limit
    assert capacity_verdict(8, "out of memory", None, True, False, True).fit is Fit.SKIP
    assert capacity_verdict(8, "out of memory", None, False, True, False) is None  # A/B: wait
    ref = capacity_verdict(8, None, "out of memory\ntrace", False, True, False)
    assert ref.fit is Fit.ERROR and ref.message.endswith("out of memory")  # never a pass


class _Run:
    """A RunContext of a committed-baseline run, without a baseline unless given one."""

    def __init__(self, runs=2, baseline=None, **knobs):
        self.current_slot = None
        self.ab = False
        self.saving = False
        self.policy = gate.GatePolicy({}, cases=1)
        self.engines = _pool(**knobs)
        self._plan = Plan(runs, False, 1)
        self._ready = Prepared(
            Profile("sim", FAKE), {}, {}, (), "cpu-x", Path("b.json"), baseline, (), {}, None, ""
        )

    def plan(self, marker_runs=None):
        return self._plan

    def ready(self):
        return self._ready


def _spec(size):
    return CaseSpec(WorkloadSpec(8, fixed(8), fixed(4)), Strategy.STATIC, size)


SETTINGS = CaseSettings(Rounds(rounds=2, warmup=0))


def test_the_runner_measures_a_case_in_passes_and_judges_it_after_its_last_planned_run():
    run = _Run(runs=2)
    runner = CaseRunner(run)
    run.current_slot = Slot(1)
    first = runner.run_case("f::t[B2]", "sweep", _spec(2), SETTINGS)
    assert first.action is Action.PENDING and "f::t[B2]" not in runner.cases
    run.current_slot = Slot(2)
    last = runner.run_case("f::t[B2]", "sweep", _spec(2), SETTINGS)
    assert last.action is Action.PASS and runner.records["f::t[B2]"].count(Side.CANDIDATE) == 2
    assert runner.cases["f::t[B2]"].verdict is Verdict.NEW  # no baseline: nothing to compare
    run.engines.close()


def test_a_batch_that_does_not_fit_skips_and_the_largest_that_fitted_gets_max_batch_size():
    run = _Run(runs=1, oom_above=4)
    runner = CaseRunner(run)
    assert runner.run_case("f::t[B4]", "sweep", _spec(4), SETTINGS).action is Action.PASS
    skipped = runner.run_case("f::t[B8]", "sweep", _spec(8), SETTINGS)
    assert skipped.action is Action.SKIP and "does not fit" in skipped.message
    cases, infeasible = runner.finished_cases()
    assert list(infeasible) == ["f::t[B8]"] and "f::t[B8]" not in cases
    assert cases["f::t[B4]"].metrics["max_batch_size"].median == 4
    run.engines.close()


def test_a_batch_the_baseline_ran_and_the_candidate_cannot_is_a_capacity_regression():
    base_run = _Run(runs=1)
    fitted = CaseRunner(base_run)
    fitted.run_case("f::t[B8]", "sweep", _spec(8), SETTINGS)
    baseline = RunResults("sim", "cpu-x", {}, fitted.finished_cases()[0])
    run = _Run(runs=1, baseline=baseline, oom_above=4)
    outcome = CaseRunner(run).run_case("f::t[B8]", "sweep", _spec(8), SETTINGS)
    assert outcome.action is Action.FAIL and "capacity regressed" in outcome.message
    assert outcome.result.comparisons[0].verdict is Verdict.REGRESSED
    base_run.engines.close()
    run.engines.close()


def test_cases_run_back_to_back_in_a_b_take_turns_at_opening_with_the_candidate():
    """Issue #38: with every case opening with the reference, an effect of a run's place
    in its case moves every case the same way."""
    run = _Run(runs=3)
    profile, spec = Profile("sim", FAKE, isolate=False), EngineSpec("sim", FAKE)
    run.ab, run._plan = True, Plan(3, ab=True)
    run.policy = gate.GatePolicy({}, cases=2, paired=True)
    run.engines = EnginePool(dict.fromkeys(Side, profile), dict.fromkeys(Side, spec))
    runner = CaseRunner(run)
    for size in (2, 4):
        runner.run_case(f"f::t[B{size}]", "sweep", _spec(size), SETTINGS)
    run.engines.close()
    opened = [min(r.runs, key=lambda i: i.slot).side for r in runner.cases.values()]
    assert opened == [Side.REFERENCE, Side.CANDIDATE]
