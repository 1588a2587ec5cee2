"""index.html and the other report files, checked as text (the browser renders them in
test_browser.py). Inputs are real llama.cpp measurements from the committed example."""

import html
import re
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from conftest import run_sim
from pytest_batchperf import report
from pytest_batchperf.report.charts import KINDS, families
from pytest_batchperf.report.html import render
from report_data import HOSTILE, TITLE_PAYLOAD, as_baseline, example, hostile, judged, slowed


@pytest.fixture(scope="module")
def base():
    return example()


@pytest.fixture(scope="module")
def regressed_run(base):
    """One case 60% slower than the example, and a driver upgrade 550 -> 580."""
    slow_id = sorted(base.cases)[-1]
    run = judged(slowed(base, slow_id, 1.6), as_baseline(base),
                 baseline_environment={**base.environment, "driver": "550.54"})
    return slow_id, replace(run, environment={**run.environment, "driver": "580.65"})


@pytest.fixture(scope="module")
def page(regressed_run):
    return render(regressed_run[1])


def _verdict_rows(page):
    body = page.split('id="verdict-table"', 1)[1].split("</tbody>", 1)[0]
    return re.findall(r'<tr class="v-([a-z]+)" data-case="([^"]*)"', body)


def test_page_is_self_contained_and_small(page):
    assert len(page.encode()) < 2_000_000
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "@import" not in page and "url(http" not in page
    assert "<link" not in page and "<script src" not in page


def test_verdict_table_lists_every_case_regressions_first(page, regressed_run):
    slow_id, run = regressed_run
    rows = _verdict_rows(page)
    assert len(rows) == len(run.cases) + len(run.missing)
    assert rows[0] == ("regressed", html.escape(slow_id))
    assert all(v != "regressed" for v, _ in rows[1:])
    first = page.split('id="verdict-table"', 1)[1].split("</tr>", 2)[1]
    # The deciding metric with its change, interval and tolerance.
    assert re.search(r"[-+]\d+\.\d%", first) and re.search(r"\[[-+]\d+\.\d%, [-+]\d+\.\d%\]", first)
    assert re.search(r">\d+%</td>", first)


def test_environment_diff_highlights_changed_rows(page):
    env = page.split('id="environment"', 1)[1].split("</table>", 1)[0]
    rows = {key: cls for cls, key in re.findall(r'<tr( class="changed")?><td>([^<]+)</td>', env)}
    assert rows["driver"] == ' class="changed"'
    assert rows["python"] == ""  # shown (a headline row) but unchanged
    assert "550.54" in env and "580.65" in env


def test_every_chart_is_drawn_with_the_baseline(page, regressed_run):
    run = regressed_run[1]
    fams = families(run)
    assert fams, "the example run has batch-size sweeps"
    figures = re.findall(r'<figure class="chart" id="([^"]+)" data-kind="([a-z]+)">\s*'
                         r"<figcaption>[^<]+</figcaption>\s*<svg", page)
    expected = sum(len(KINDS) - (len(f.sweeps) < 2) for f in fams)
    assert len(figures) == expected
    assert {k for _, k in figures} == set(KINDS)
    throughput = page.split('data-kind="throughput"', 1)[1].split("</figure>", 1)[0]
    assert "(baseline)" in throughput  # the baseline is drawn in
    for svg in re.findall(r"<svg.*?</svg>", page, re.S):
        ET.fromstring(svg)  # well-formed: it renders inline


def test_case_details_show_samples_and_statistics(page, regressed_run):
    slow_id, run = regressed_run
    detail = page.split(f"<summary><span class=\"chip v-regressed\">regressed</span> "
                        f"{html.escape(slow_id)}</summary>", 1)[1].split('<details class="case"', 1)[0]
    case = run.cases[slow_id]
    assert case.params["strategy"] in detail and str(case.params["batch_size"]) in detail
    assert "workload" in detail and '"num_requests"' in html.unescape(detail)
    row = detail.split("<td>output_tok_s", 1)[1].split("</tr>", 1)[0]
    samples = case.metrics["output_tok_s"].samples
    assert row.count(",") >= len(samples) - 1  # every round sample is listed
    comp = next(c for c in case.comparisons if c.metric == "output_tok_s")
    assert f"{comp.p_value:.3g}" in row and "regressed" in row


def test_markup_in_names_is_escaped(base):
    page = render(judged(hostile(base), as_baseline(base)))
    assert HOSTILE not in page and "alert(1)" in page
    assert html.escape(HOSTILE) in page
    assert "<img" not in page and TITLE_PAYLOAD not in page
    assert page.count("<script") == 1  # only the report's own


def test_first_run_writes_every_file_and_the_step_summary(base, tmp_path, monkeypatch):
    step = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    written = report.write_all(judged(base, None), tmp_path / "out")
    assert sorted(p.name for p in written) == ["index.html", "results.json", "summary.md"]
    assert step.read_text().startswith(f"## batchperf: {len(base.cases)} new")
    page = (tmp_path / "out" / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "none yet" in page
    assert "(baseline)" not in page  # nothing to draw in on a first run


def test_junit_xml_carries_metrics_as_properties(sim_project):
    p = sim_project()
    run_sim(p, "--junitxml=junit.xml").assert_outcomes(passed=4)
    tree = ET.parse(p.path / "junit.xml")
    case = next(tc for tc in tree.iter("testcase") if tc.get("name") == "test_sweep[B8-continuous]")
    props = {pr.get("name"): pr.get("value") for pr in case.iter("property")}
    assert props["batchperf.verdict"] == "new"
    assert float(props["batchperf.output_tok_s"]) > 0
    assert float(props["batchperf.e2e_ms_p95"]) >= float(props["batchperf.e2e_ms_p50"])
