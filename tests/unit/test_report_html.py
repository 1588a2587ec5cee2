"""index.html and the other report files, checked as text (the browser renders them in
test_browser.py). Inputs are real llama.cpp measurements from the committed example,
spread over five runs per case where a verdict needs the between-run statistics."""

import html
import re
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest
from helpers.report_data import (
    HOSTILE,
    TITLE_PAYLOAD,
    as_baseline,
    example,
    hostile,
    judged,
    several_runs,
    slowed,
)
from helpers.sim import run_sim

from pytest_batchperf import report
from pytest_batchperf.judge.results import MetricRuns
from pytest_batchperf.report.charts import KINDS, families
from pytest_batchperf.report.html import render
from pytest_batchperf.report.summary import markdown


@pytest.fixture(scope="module")
def base():
    """The example, five runs per case (its one run, jittered run by run)."""
    return several_runs(example())


@pytest.fixture(scope="module")
def regressed_run(base):
    """One case three times slower than the example, and a driver upgrade 550 -> 580."""
    slow_id = sorted(base.cases)[-1]
    run = judged(
        slowed(base, slow_id, 3.0),
        as_baseline(base),
        baseline_environment={**base.environment, "driver": "550.54"},
    )
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
    table = page.split('id="verdict-table"', 1)[1]
    head = re.findall(r"<th[^>]*>([^<]+)</th>", table.split("</thead>", 1)[0])
    assert head == [
        "verdict",
        "suite",
        "case",
        "strategy",
        "batch size",
        "metric",
        "baseline",
        "now",
        "change",
        "interval",
        "runs",
        "tolerance",
        "detectable",
    ]
    first = table.split("</tr>", 2)[1]
    # The deciding metric with its change, interval, runs, tolerance and detectable change.
    assert re.search(r"[-+]\d+\.\d%", first) and re.search(r"\[[-+]\d+\.\d%, [-+]\d+\.\d%\]", first)
    assert re.search(r">\d+%</td>", first)
    assert '<td data-key="5">5</td>' in first  # five runs a side
    assert re.search(r">\d+\.\d%</td>\s*$", first)  # detectable


def test_ab_mode_names_the_sides_reference_and_candidate(regressed_run):
    page = render(replace(regressed_run[1], mode="ab"))
    head = page.split('id="verdict-table"', 1)[1].split("</thead>", 1)[0]
    assert ">reference</th>" in head and ">candidate</th>" in head and ">pairs</th>" in head
    assert ">baseline</th>" not in head and ">now</th>" not in head


def test_environment_diff_highlights_changed_rows(page):
    env = page.split('id="environment"', 1)[1].split("</table>", 1)[0]
    rows = {key: cls for cls, key in re.findall(r'<tr( class="changed")?><td>([^<]+)</td>', env)}
    assert rows["driver"] == ' class="changed"'
    assert rows["python"] == ""  # shown (a headline row) but unchanged
    assert "550.54" in env and "580.65" in env


def _figures(page):
    return re.findall(
        r'<figure class="chart" id="([^"]+)" data-kind="([a-z]+)">\s*'
        r"<figcaption>[^<]+</figcaption>\s*<svg",
        page,
    )


def _has_roofline(family):
    return any("roofline_pct" in p.case.metrics for s in family.sweeps for p in s.points)


def test_every_chart_is_drawn_with_the_baseline(page, regressed_run):
    run = regressed_run[1]
    fams = families(run)
    assert fams, "the example run has batch-size sweeps"
    figures = _figures(page)
    # Every kind, but strategies side by side only where there are two, and the roofline
    # only where it was measured (the CPU example has no roofline).
    expected = sum(len(KINDS) - (len(f.sweeps) < 2) - (not _has_roofline(f)) for f in fams)
    assert len(figures) == expected
    assert {k for _, k in figures} == set(KINDS) - {"roofline"}
    throughput = page.split('data-kind="throughput"', 1)[1].split("</figure>", 1)[0]
    assert "(baseline)" in throughput  # the baseline is drawn in
    for svg in re.findall(r"<svg.*?</svg>", page, re.S):
        ET.fromstring(svg)  # well-formed: it renders inline


def test_a_measured_roofline_gets_its_chart(base):
    case_id = sorted(base.cases)[0]
    case = base.cases[case_id]
    roofline = MetricRuns.build("roofline_pct", [[40.0, 41.0]] * 3)
    run = replace(
        base,
        cases={
            **base.cases,
            case_id: replace(case, metrics={**case.metrics, "roofline_pct": roofline}),
        },
    )
    kinds = [k for _, k in _figures(render(run))]
    assert kinds.count("roofline") == 1 and len(kinds) == len(_figures(render(base))) + 1


def test_case_details_show_runs_and_statistics(page, regressed_run):
    slow_id, run = regressed_run
    detail = page.split(
        f'<summary><span class="chip v-regressed">regressed</span> '
        f"{html.escape(slow_id)}</summary>",
        1,
    )[1].split('<details class="case"', 1)[0]
    case = run.cases[slow_id]
    assert case.params["strategy"] in detail and str(case.params["batch_size"]) in detail
    assert "workload" in detail and '"num_requests"' in html.unescape(detail)
    row = detail.split("<td>output_tok_s", 1)[1].split("</tr>", 1)[0]
    m = case.metrics["output_tok_s"]
    # Each run's summary is listed; every round of every run is in the cell's title.
    title, listed = re.search(r'class="samples" title="rounds: ([^"]*)">([^<]*)</td>', row).groups()
    assert listed.split(", ") == [f"{x:,.0f}" for x in m.summaries] and len(m.summaries) == 5
    assert title.count("[") == len(m.runs) and len(title.replace("[", " ").split()) == len(m.rounds)
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
    written, errors = report.write_all(judged(base, None), tmp_path / "out")
    assert sorted(p.name for p in written) == ["index.html", "results.json", "summary.md"]
    assert errors == []
    assert step.read_text().startswith(f"## batchperf: {len(base.cases)} new")
    page = (tmp_path / "out" / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "none yet" in page
    assert "(baseline)" not in page  # nothing to draw in on a first run


def test_summary_md_is_markdown_escaped_as_markdown(base, regressed_run, tmp_path):
    """summary.md is read as Markdown (a PR comment, a step summary): markup in names is
    escaped with backslashes, never as HTML entities, so `->` and quotes stay as typed;
    case ids are code spans."""
    slow_id = regressed_run[0]
    run = judged(hostile(slowed(base, slow_id, 3.0)), as_baseline(base))
    _, errors = report.write_all(run, tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert text == markdown(run) and errors == []
    assert "&lt;" not in text and "&gt;" not in text and "&amp;" not in text and "&#" not in text
    assert f"| regressed | `{slow_id}` |" in text
    assert "output_tok_s: " in text and " -> " in text and "5 vs 5 runs" in text
    # Markup outside code spans is escaped: no raw tag opens anywhere but in a code span.
    outside = re.sub(r"`[^`]*`", "", text)
    assert not re.search(r"(?<!\\)<", outside) and "\\<script>" in outside
    # A pipe in a name would end the table cell: escaped too, in and out of code spans.
    piped = judged(
        replace(
            run, cases={"a|b": replace(run.cases[slow_id], case_id="a|b", warnings=("x | y",))}
        ),
        as_baseline(base),
    )
    assert "`a\\|b`" in markdown(piped) and "x \\| y" in markdown(piped)


def test_junit_xml_carries_metrics_as_properties(sim_project):
    p = sim_project()
    run_sim(p, "--junitxml=junit.xml").assert_outcomes(passed=4)
    tree = ET.parse(p.path / "junit.xml")
    case = next(tc for tc in tree.iter("testcase") if tc.get("name") == "test_sweep[B8-continuous]")
    props = {pr.get("name"): pr.get("value") for pr in case.iter("property")}
    assert props["batchperf.verdict"] == "new"
    assert float(props["batchperf.output_tok_s"]) > 0
    assert float(props["batchperf.e2e_ms_p95"]) >= float(props["batchperf.e2e_ms_p50"])
