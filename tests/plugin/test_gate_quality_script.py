"""scripts/gate_quality.py end to end, each repetition in a new process (``--fresh``), on
the SimulatedEngine (a fake: this checks the measuring and judging pipeline, not a
figure). A noiseless engine must give no A/A false alarm and catch a 50 % slowdown."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gate_quality.py"


def _run(*args, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_fresh_process_measure_then_analyse(tmp_path):
    out = tmp_path / "gate.json"
    measured = _run("measure", "--fresh", "--out", str(out), "--set",
                    "engine=simulated_engine:SimulatedEngine", "--set", "noise=0.0",
                    "--aa", "3", "--ab", "1", "--slowdowns", "0.5", "--requests", "8",
                    "--cases", "continuous:2,static:4", "--rounds", "3", cwd=tmp_path)
    assert measured.returncode == 0, measured.stderr
    data = json.loads(out.read_text())
    assert data["meta"]["fresh_process"] is True
    assert data["meta"]["engine"]  # the worker's describe(), from its own process
    runs = {(r["case"], r["slowdown"], r["rep"]) for r in data["runs"]}
    assert len(runs) == 2 * (3 + 1)  # 2 cases x (3 A + 1 slowed repetition)

    report = _run("analyse", str(out), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    text = report.stdout
    assert "| **all case-metrics** | | **0/" in text  # no A/A false alarm
    assert "| **50%** | **all** | | | **6/6 (100.0%)** |" in text, text

    # A profile's own tolerance table, as recorded in its description, judges its runs.
    lenient = json.loads(out.read_text())
    lenient["meta"]["profile"]["tolerance.*"] = 0.99
    (tmp_path / "lenient.json").write_text(json.dumps(lenient))
    text = _run("analyse", str(tmp_path / "lenient.json"), cwd=tmp_path).stdout
    assert "| **50%** | **all** | | | **0/6 (0.0%)** |" in text, text

    # Files from two machines of one class join into one set, repetitions renumbered.
    merged = tmp_path / "merged.json"
    joined = _run("merge", "--out", str(merged), str(out), str(out), cwd=tmp_path)
    assert joined.returncode == 0, joined.stderr
    reps = sorted(r["rep"] for r in json.loads(merged.read_text())["runs"]
                  if r["slowdown"] == 0.0 and r["case"] == "continuous-B2")
    assert reps == list(range(6))
    assert "## A/A: 6 repetitions" in _run("analyse", str(merged), cwd=tmp_path).stdout

    other = json.loads(out.read_text())
    other["meta"]["profile"]["name"] = "another"
    (tmp_path / "other.json").write_text(json.dumps(other))
    refused = _run("merge", "--out", str(tmp_path / "x.json"), str(out),
                   str(tmp_path / "other.json"), cwd=tmp_path)
    assert refused.returncode == 2 and "has profile 'another'" in refused.stderr
