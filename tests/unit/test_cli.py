"""The ``batchperf`` command: compare, report, merge, baseline show/promote, bad input.

Runs are real llama.cpp measurements (the committed example: one run per case, so compared
through the one-run rule; spread over five runs where the test is about the between-run
statistics); a slowdown is injected by scaling one case's rounds. The last test measures
with the real engine end to end."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from helpers.report_data import as_baseline, example, several_runs, slowed

from pytest_batchperf import SCHEMA_VERSION
from pytest_batchperf.cli import main
from pytest_batchperf.judge import baseline
from pytest_batchperf.judge.merge import merge
from pytest_batchperf.report.charts import families
from pytest_batchperf.report.html import render


def _write(path: Path, run) -> str:
    path.write_text(json.dumps(run.to_dict(), indent=2))
    return str(path)


def _files(tmp_path, run):
    tmp_path.mkdir(exist_ok=True)
    return (
        tmp_path,
        run,
        _write(tmp_path / "base.json", as_baseline(run)),
        _write(tmp_path / "run.json", run),
    )


@pytest.fixture
def files(tmp_path):
    """The example as it is (one run per case) and its baseline (one summary per case)."""
    return _files(tmp_path, replace(example(), kind="run"))


@pytest.fixture
def multi(tmp_path):
    """The example spread over five runs per case, and its five-run baseline."""
    return _files(tmp_path / "multi", replace(several_runs(example()), kind="run"))


@pytest.fixture(params=["files", "multi"])
def either(request):
    return request.getfixturevalue(request.param)


def test_compare_run_with_its_own_baseline_passes(either, capsys):
    tmp, run, base, cur = either
    assert main(["compare", base, cur, "-o", str(tmp / "out")]) == 0
    out, err = capsys.readouterr()
    assert f"{len(run.cases)} pass" in out and "REGRESSED" not in out and err == ""
    assert json.loads((tmp / "out" / "results.json").read_text())["verdict_counts"] == {
        "pass": len(run.cases)
    }
    assert (tmp / "out" / "index.html").exists()


def test_compare_injected_slowdown_fails_and_names_the_case(multi, capsys):
    tmp, run, base, _ = multi
    victim = sorted(run.cases)[0]
    cur = _write(tmp / "slow.json", slowed(run, victim, 3.0))
    assert main(["compare", base, cur]) == 1
    out, err = capsys.readouterr()
    assert f"REGRESSED {victim}" in out and "output_tok_s:" in out
    assert err.strip() == f"FAILED {victim}: regressed"
    # A wider tolerance than the change lets it through: same rule as the plugin.
    assert main(["compare", base, cur, "--tolerance", "*=300"]) == 0


def test_compare_tolerates_a_small_change(either):
    tmp, run, base, _ = either
    cur = _write(tmp / "slight.json", slowed(run, sorted(run.cases)[0], 1.03))
    assert main(["compare", base, cur]) == 0


def test_compare_says_how_it_judged(files, multi, capsys):
    """Five runs a side: the runs judged against the baseline runs. One run a side: no between-run
    noise is known, so the note says the tolerance was doubled."""
    tmp, run, base, _ = multi
    victim = sorted(run.cases)[0]
    assert main(["compare", base, _write(tmp / "slow5.json", slowed(run, victim, 3.0))]) == 1
    out = capsys.readouterr().out
    assert "5 vs 5 runs" in out and "one reference run" not in out
    tmp, run, base, _ = files
    slow = _write(tmp / "slow1.json", slowed(run, victim, 1.5))
    # The example's three rounds spread 275-365 tok/s: on its rounds alone a third less
    # throughput is within their noise, so it is inconclusive, and fails only when strict.
    assert main(["compare", base, slow]) == 0
    out = capsys.readouterr().out
    assert f"INCONCLUSIVE {victim}" in out
    assert "1 vs 1 runs" in out and "one reference run" in out and "2x the tolerance" in out
    assert main(["compare", base, slow, "--strict"]) == 1


def test_compare_uses_the_gate_the_run_recorded(multi, capsys):
    """--alpha defaults to the alpha the run was judged with, and the tolerances it
    recorded hold unless --tolerance overrides them."""
    tmp, run, base, _ = multi
    victim = sorted(run.cases)[0]
    recorded = replace(slowed(run, victim, 1.75), gate={"alpha": 0.2, "tolerances": {"*": 0.8}})
    base = _write(tmp / "base3.json", as_baseline(run, jobs=3))  # its 3 jobs' own spread
    cur = _write(tmp / "recorded.json", recorded)
    assert main(["compare", base, cur, "-o", str(tmp / "out")]) == 0  # 80 %: within it
    gate = json.loads((tmp / "out" / "results.json").read_text())["gate"]
    assert gate["alpha"] == 0.2 and gate["tolerances"] == {"*": 0.8}
    assert gate["cases"] == len(run.cases)
    assert (
        main(
            [
                "compare",
                base,
                cur,
                "--tolerance",
                "*=10",
                "--alpha",
                "0.05",
                "-o",
                str(tmp / "out2"),
            ]
        )
        == 1
    )
    gate = json.loads((tmp / "out2" / "results.json").read_text())["gate"]
    assert gate["alpha"] == 0.05 and gate["tolerances"] == {"*": 0.1}
    capsys.readouterr()
    # Without a recorded gate, the default.
    assert main(["compare", base, _write(tmp / "plain.json", run), "-o", str(tmp / "out3")]) == 0
    assert json.loads((tmp / "out3" / "results.json").read_text())["gate"]["alpha"] == 0.01


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ("{not json", "invalid JSON at line 1"),
        (
            '{"schema_version": 999, "profile": "p", "hardware_class": "h", "cases": {}}',
            "newer pytest-batchperf",
        ),
        ("[1, 2]", "top level is not an object"),
        (
            f'{{"schema_version": {SCHEMA_VERSION}, "profile": "p", "hardware_class": "h", '
            '"cases": {"c": {"metrics": {"m": {"samples": "x"}}}}}',
            "has no runs of numeric values",
        ),
    ],
)
@pytest.mark.parametrize(
    "command",
    [["report"], ["compare", "OK"], ["merge"], ["baseline", "show"], ["baseline", "promote"]],
)
def test_bad_input_is_one_line_exit_2(files, capsys, content, message, command):
    tmp, _, base, _ = files
    bad = tmp / "bad.json"
    if content is not None:
        bad.write_text(content)
    argv = [base if a == "OK" else a for a in command] + [str(bad)]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("batchperf: error: ") and message in err
    assert str(bad) in err and "Traceback" not in err + out


def test_console_script_is_installed_and_clean_on_errors(tmp_path):
    exe = Path(sys.executable).with_name("batchperf")
    if not exe.exists():
        pytest.skip(f"no console script next to {sys.executable} (package not installed)")
    r = subprocess.run(
        [str(exe), "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and all(
        c in r.stdout for c in ("report", "compare", "merge", "baseline")
    )


def test_a_reader_that_stops_early_gets_no_traceback_and_no_clean_exit(files):
    """`batchperf compare ... | head`: a closed pipe is exit 141 (as shell tools), never 0,
    so that an unread verdict cannot pass for a clean run."""
    import os

    _, _, base, cur = files
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        r = subprocess.run(
            [sys.executable, "-m", "pytest_batchperf.cli", "compare", base, cur],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert r.returncode == 141 and "Traceback" not in r.stderr and "Exception" not in r.stderr


def test_report_rebuilds_the_reports(files, capsys):
    tmp, run, _, cur = files
    assert main(["report", cur, "-o", str(tmp / "rep")]) == 0
    assert {p.name for p in (tmp / "rep").iterdir()} == {"index.html", "results.json", "summary.md"}
    again = json.loads((tmp / "rep" / "results.json").read_text())
    assert again["kind"] == "run" and set(again["cases"]) == set(run.cases)
    assert "Optimal batch size" in capsys.readouterr().out


def _shards(run):
    ids = sorted(run.cases)
    half = len(ids) // 2
    return [
        replace(run, cases={k: run.cases[k] for k in part}) for part in (ids[:half], ids[half:])
    ]


def test_merge_shards_of_one_hardware_class(files, capsys):
    tmp, run, _, _ = files
    a, b = _shards(run)
    paths = [_write(tmp / "a.json", a), _write(tmp / "b.json", b)]
    assert main(["merge", *paths, "-o", str(tmp / "m")]) == 0
    merged = json.loads((tmp / "m" / "results.json").read_text())
    assert set(merged["cases"]) == set(run.cases) and merged["profile"] == run.profile
    # The same case from two shards is refused, naming both files.
    assert main(["merge", paths[0], paths[0]]) == 2
    assert "is in both" in capsys.readouterr().err


def test_merge_hardware_classes_keeps_both(files):
    _, run, _, _ = files
    gpu = replace(
        run,
        hardware_class="nvidia-h100-80gb-hbm3",
        environment={**run.environment, "gpu": "NVIDIA H100 80GB HBM3"},
    )
    merged = merge([run, gpu])
    assert len(merged.cases) == 2 * len(run.cases)
    assert merged.hardware_class == f"{run.hardware_class}, nvidia-h100-80gb-hbm3"
    cid = sorted(run.cases)[0]
    assert f"nvidia-h100-80gb-hbm3/{run.profile}::{cid}" in merged.cases
    assert merged.environment["nvidia-h100-80gb-hbm3/default"]["gpu"] == "NVIDIA H100 80GB HBM3"
    page = render(merged)  # one chart family per hardware class
    assert page.count('data-kind="throughput"') == 2 * len(families(run))


def test_baseline_promote_then_show(files, capsys):
    tmp, run, _, cur = files
    bad = next(iter(sorted(run.cases)))
    errored = replace(
        run, cases={**run.cases, bad: replace(run.cases[bad], error="engine crashed")}
    )
    cur = _write(tmp / "errored.json", errored)
    assert main(["baseline", "promote", cur, "--baseline-dir", str(tmp / "bl")]) == 0
    path = baseline.baseline_path(tmp / "bl", run.hardware_class, run.profile)
    saved = baseline.load(path)
    assert set(saved.cases) == set(run.cases) - {bad}  # an errored case is not promoted
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]
    out = capsys.readouterr().out
    assert f"not promoted (errored or no metrics): {bad}" in out
    assert main(["baseline", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"baseline of profile {run.profile} on {run.hardware_class}" in out
    assert all(cid in out for cid in saved.cases) and "tok/s, median of 1 run(s)" in out


def test_promote_refuses_an_interrupted_run(files, capsys):
    tmp, run, _, _ = files
    cur = _write(tmp / "int.json", replace(run, interrupted=True))
    assert main(["baseline", "promote", cur, "--to", str(tmp / "b.json")]) == 2
    assert "interrupted" in capsys.readouterr().err and not (tmp / "b.json").exists()


E2E_SUITE = """
from pytest_batchperf.workload import WorkloadSpec, fixed

WL = WorkloadSpec(name="e2e", num_requests=6, prompt=fixed(16), output=fixed(8), seed=7)

def test_continuous(batchperf):
    batchperf.run(WL, "continuous", batch_size=3)
"""


def test_end_to_end_llama_cpp_run_then_compare(pytester):
    """Real engine: measure once, save the baseline, and the CLI finds the run equal to it."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    pytester.makepyfile(test_e2e=E2E_SUITE)
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--benchmark-disable",
        "--batchperf-rounds",
        "2",
        "--batchperf-warmup",
        "0",
        "--batchperf-save",
        timeout=300,
    )
    result.assert_outcomes(passed=1)
    [base] = (pytester.path / "baselines").rglob("default.json")
    results = pytester.path / "reports" / "results.json"
    assert (pytester.path / "reports" / "index.html").exists()
    r = subprocess.run(
        [sys.executable, "-m", "pytest_batchperf.cli", "compare", str(base), str(results)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 pass" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--aa", "0", "--slowdowns", ""], "nothing to measure"),
        (["--slowdowns", "ten"], "--slowdowns takes fractions"),
    ],
)
def test_gate_quality_refuses_a_campaign_it_cannot_run_in_one_line(capsys, args, message):
    assert main(["gate-quality", *args]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and message in err and "Traceback" not in err + out
