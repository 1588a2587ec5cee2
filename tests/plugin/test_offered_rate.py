"""Load cases offer the reference's request rate (and goodput SLO), not freshly calibrated
ones: calibration moves with the engine's speed (and with noise), and a gate that compared
latencies under different offered loads would report changes of the load as regressions.
The reference is the baseline's case, or within one run the case's first run (every run of
a save, both sides of an A/B job). The real suites/test_latency_under_load.py runs here on
the SimulatedEngine."""

import json
import xml.etree.ElementTree as ET
from dataclasses import replace

from helpers.shipped import copy_suites
from helpers.sim import run_sim

from pytest_batchperf.judge import baseline as baselines
from pytest_batchperf.judge.results import CaseResult, MetricRuns, RunResults
from pytest_batchperf.options import Options
from pytest_batchperf.prepared import Prepared
from pytest_batchperf.profiles import Profile
from pytest_batchperf.session import BatchperfSession
from pytest_batchperf.workload import SLO, Arrival, CaseSpec, Strategy, WorkloadSpec

SUITE = "suites/test_latency_under_load.py"
LOAD_CASES = [f"{SUITE}::test_latency_under_load[{f}]" for f in ("0.25x", "0.5x", "0.8x", "4x")]


def _load_project(sim_project):
    p = sim_project(suite="")  # the real suite, as shipped, beside the fake engine
    copy_suites(p.path, "test_latency_under_load.py")
    return p


def _rates(data):
    return {
        cid: data["cases"][cid]["params"]["workload"]["arrival"]["rate"]
        for cid in LOAD_CASES
        if cid in data["cases"]
    }


def _slos(data):
    return {cid: data["cases"][cid]["params"]["slo"] for cid in LOAD_CASES if cid in data["cases"]}


def _sources(pytester, junit):
    """batchperf.offered_rate_source of each case, from the JUnit XML's properties."""
    out = {}
    for tc in ET.parse(pytester.path / junit).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in tc.iter("property")}
        if "batchperf.offered_rate_source" in props:
            out[f"{SUITE}::{tc.get('name')}"] = props["batchperf.offered_rate_source"]
    return out


def _run(p, *args):
    result = run_sim(p, "--junitxml=junit.xml", *args)
    data = json.loads((p.path / "reports" / "results.json").read_text())
    assert "error" not in data["verdict_counts"], data["verdict_counts"]
    return result, _rates(data), _slos(data), _sources(p, "junit.xml")


def test_rerun_offers_the_baselines_rate_on_a_slower_engine(sim_project):
    p = _load_project(sim_project)
    # The baseline lacks the 4x case, which must then fall back to the calibrated rate.
    result, saved, saved_slos, sources = _run(
        p, "--batchperf-save", "--batchperf-runs", "1", "-k", "not 4x"
    )
    result.assert_outcomes(passed=4, deselected=1)
    assert len(saved) == 3 and all(r > 0 for r in saved.values())
    assert set(sources.values()) == {"calibrated"}

    # 30 % slower: calibrating now gives other rates (the control, with no baseline) ...
    _, fresh, fresh_slos, sources = _run(
        p, "--batchperf-set", "slowdown=0.3", "--batchperf-baseline-dir", "elsewhere"
    )
    assert set(sources.values()) == {"calibrated"}
    assert all(fresh[cid] != rate for cid, rate in saved.items()), (fresh, saved)
    assert all(fresh_slos[cid] != slo for cid, slo in saved_slos.items())

    # ... but against the baseline the same cases offer the baseline's rates (and count
    # goodput against its SLOs).
    _, rerun, rerun_slos, sources = _run(p, "--batchperf-set", "slowdown=0.3")
    assert {cid: rerun[cid] for cid in saved} == saved
    assert {cid: rerun_slos[cid] for cid in saved} == saved_slos
    assert sources == {**{cid: "reference" for cid in saved}, LOAD_CASES[3]: "calibrated"}

    # Re-saving keeps the workload stable too.
    _run(p, "--batchperf-save", "--batchperf-set", "slowdown=0.3")
    [path] = (p.path / "baselines").rglob("sim.json")
    kept = _rates(json.loads(path.read_text()))
    assert {cid: kept[cid] for cid in saved} == saved and LOAD_CASES[3] in kept


def test_every_run_of_a_save_offers_the_same_load(sim_project):
    p = _load_project(sim_project)
    run_sim(p, "--batchperf-save", "--batchperf-runs", "3", "-k", "0.5x").assert_outcomes(
        passed=1, deselected=4
    )
    [path] = (p.path / "baselines").rglob("sim.json")
    case = json.loads(path.read_text())["cases"][LOAD_CASES[1]]
    assert len(case["metrics"]["output_tok_s"]["runs"]) == 3  # three runs of one workload


def test_session_reference_spec(tmp_path):
    session = BatchperfSession(Options(), tmp_path)
    assert session.reference_spec("t.py::test_a") is None  # no baseline at all

    spec = CaseSpec(
        WorkloadSpec(12, arrival=Arrival("poisson", 3.4)), Strategy.CONTINUOUS, 8, SLO(100.0, 20.0)
    )
    path = tmp_path / "base.json"
    measured = {"output_tok_s": MetricRuns.build("output_tok_s", [[100.0, 101.0]])}
    baselines.save(
        path,
        RunResults(
            "sim",
            "cpu-x",
            {},
            {"t.py::test_a": CaseResult("t.py::test_a", "t::test_a", spec, measured)},
        ),
    )
    session.setup = Prepared(
        profile=Profile("sim", "simulated_engine:SimulatedEngine"),
        sides={},
        specs={},
        gpus=(),
        hardware_class="cpu-x",
        baseline_path=path,
        baseline=baselines.load(path),
        other_classes=(),
        priors={},
        roofline=None,
        started="",
    )
    got = session.reference_spec("t.py::test_a")
    assert got == spec and got.workload.arrival.rate == 3.4 and got.slo.ttft_ms == 100.0
    assert session.reference_spec("t.py::test_b") is None  # not in the baseline
    assert replace(got, batch_size=1) != spec  # frozen data: a caller cannot edit it
