"""The session's parts on their own: the engine pool (on the SimulatedEngine, a FAKE engine
for the plugin's logic, in this process) and the run summary's pure functions."""

import sys
from pathlib import Path

import pytest

from pytest_batchperf.engine_pool import EnginePool
from pytest_batchperf.engines.base import EngineError, EngineSpec
from pytest_batchperf.judge.results import CaseResult, MetricRuns
from pytest_batchperf.plan import Side, Slot
from pytest_batchperf.profiles import Profile
from pytest_batchperf.run_summary import largest_fitting, missing
from pytest_batchperf.workload import CaseSpec, Strategy, WorkloadSpec

sys.path.insert(0, str(Path(__file__).parents[1] / "helpers"))
FAKE = "simulated_engine:SimulatedEngine"


def _pool(engine=FAKE):
    profile = Profile("sim", engine, isolate=False)
    return EnginePool({Side.CANDIDATE: profile}, {Side.CANDIDATE: EngineSpec("sim", engine)})


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
