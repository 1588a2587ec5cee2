"""The HTML report in a real headless Chromium (Debian's ``chromium``, driven by
subprocess): the verdict table and every chart are there, the page's own script ran to
its end, the console is silent, and markup in names ran nothing. A screenshot is kept
under reports/ for people to look at."""

import html
import os
import re
import shutil
import subprocess

import pytest
from helpers.report_data import (
    HOSTILE,
    ROOT,
    as_baseline,
    example,
    hostile,
    judged,
    several_runs,
    slowed,
)

from pytest_batchperf.report.charts import KINDS, families
from pytest_batchperf.report.html import write_html

SCREENSHOT = ROOT / "reports" / "browser-report.png"


@pytest.fixture(scope="module")
def chromium():
    exe = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    if exe is None:
        why = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI must run the browser tests", pytrace=False)
        pytest.skip(why)
    return exe


def load(chromium, page, tmp_path, screenshot=None):
    """Open ``page`` from disk; returns (DOM after scripts ran, console messages)."""
    args = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1280,2400",
        "--dump-dom",
    ]
    if screenshot:
        args.append(f"--screenshot={screenshot}")
    r = subprocess.run(args + [page.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    # Chromium logs every console message (any level) as INFO:CONSOLE; the report logs none.
    console = [line for line in r.stderr.splitlines() if ":CONSOLE" in line]
    return r.stdout, console


def test_console_errors_are_seen(chromium, tmp_path):
    """The harness itself: a page that throws is caught (else the next test proves nothing)."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><title>t</title><script>console.error('x'); nope();</script>")
    _, console = load(chromium, page, tmp_path)
    assert any("nope is not defined" in line for line in console)


def test_report_in_chromium(chromium, tmp_path):
    base = several_runs(example())
    victim = sorted(base.cases)[0]
    run = judged(
        hostile(slowed(base, victim, 3.0)),
        as_baseline(base),
        baseline_environment={**base.environment, "python": "3.10.0"},
    )
    page = write_html(run, tmp_path / "index.html")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    dom, console = load(chromium, page, tmp_path, SCREENSHOT)

    assert console == []
    assert 'data-batchperf-ready="1"' in dom  # the report's script ran to its end
    title = re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
    assert "pwned" not in title and title.startswith("batchperf: 1 error, 1 regressed")
    # The hostile names are text on the page, escaped, not elements.
    assert html.escape(HOSTILE, quote=False) in dom and HOSTILE not in dom
    assert "<img" not in dom

    table = dom.split('id="verdict-table"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr class="v-([a-z]+)" data-case="([^"]*)"', table)
    assert len(rows) == len(run.cases) and rows[0][0] == "error"
    assert rows[1] == ("regressed", html.escape(victim))
    assert "engine crashed: &lt;script&gt;" in table
    fams = families(run)

    def has_roofline(f):
        return any("roofline_pct" in p.case.metrics for s in f.sweeps for p in s.points)

    expected = sum(len(KINDS) - (len(f.sweeps) < 2) - (not has_roofline(f)) for f in fams)
    charts = re.findall(
        r'<figure class="chart" id="[^"]+" data-kind="([a-z]+)">.*?</figure>', dom, re.S
    )
    assert len(charts) == expected > 0
    assert all("<svg" in c for c in re.findall(r'<figure class="chart".*?</figure>', dom, re.S))
    env = dom.split('id="environment"', 1)[1].split("</table>", 1)[0]
    assert re.search(r'<tr class="changed"><td>python</td><td>3\.10\.0</td>', env)
    assert SCREENSHOT.stat().st_size > 10_000
