"""The recorded H100 campaign (docs/results/data/h100-vllm-campaign.json) judged by today's
gate: what `batchperf gate-quality --analyse` prints for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_batchperf import campaign
from pytest_batchperf.cli import main

DATA = Path(__file__).resolve().parents[2] / "docs/results/data/h100-vllm-campaign.json"


@pytest.fixture(scope="module")
def runs():
    return json.loads(DATA.read_text())["runs"]


def _failed(run) -> bool:
    return any(c.verdict.value in ("regressed", "error") for c in run.cases.values()) or any(
        c.verdict.value == "regressed" for c in run.suite
    )


def test_jobs_are_formed_in_run_order(runs):
    aa = campaign.ab_jobs(runs, "a", 2)
    assert [[(a["run"], b["run"]) for a, b in job] for job in aa] == [[(1, 2), (6, 9)]]
    eager = campaign.committed_jobs(runs, "e", 3)
    assert all(c["run"] not in [b["run"] for b in base] for base, c in eager)
    assert [len(base) for base, _ in eager] == [3, 3]


def test_a_a_jobs_pass_and_cuda_graphs_off_fails_in_both_modes(runs):
    device, profile = "cuda", "vllm-synthetic-8b"
    for base, cand in campaign.committed_jobs(runs, "a", 3):
        assert not _failed(campaign._judge_committed(base, cand, device, profile))
    for base, cand in campaign.committed_jobs(runs, "e", 3):
        run = campaign._judge_committed(base, cand, device, profile)
        assert all(c.verdict.value == "regressed" for c in run.cases.values())
    for job in campaign.ab_jobs(runs, "a", 2):
        assert not _failed(campaign._judge_ab(job, device, profile))
    for job in campaign.ab_jobs(runs, "e", 2):
        assert _failed(campaign._judge_ab(job, device, profile))


def test_cli_judges_a_campaign_and_writes_the_table(tmp_path, capsys):
    assert (
        main(
            [
                "gate-quality",
                "--analyse",
                str(DATA),
                "--save-runs",
                "3",
                "--pairs",
                "2",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    table = (tmp_path / "gate-quality.md").read_text()
    assert "| committed, K=3 | `e` | 2 | 2 |" in table
    assert table.strip() in capsys.readouterr().out


def test_compact_refuses_a_folder_without_runs(tmp_path, capsys):
    assert main(["gate-quality", "--compact", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "no run-NN-KIND" in capsys.readouterr().err


def test_compact_keeps_each_cases_host_reading(tmp_path):
    """The GPU host's side of the noise: whether the engine's threads waited for a core."""
    import json
    from dataclasses import replace

    from helpers.report_data import example, several_runs

    from pytest_batchperf.campaign import compact
    from pytest_batchperf.judge.results import RunInfo

    run = several_runs(example(), 1)
    reading = {"runqueue_wait_pct": 3.5, "foreign_cpu_pct": 0.4, "steal_pct": 0.0}
    run = replace(
        run,
        cases={
            cid: replace(c, runs=(RunInfo(1, interference=reading),))
            for cid, c in run.cases.items()
        },
    )
    (tmp_path / "run-01-a").mkdir()
    (tmp_path / "run-01-a" / "results.json").write_text(json.dumps(run.to_dict()))
    host = compact(tmp_path)["runs"][0]["host"]
    assert set(host) == {cid.rsplit("::", 1)[-1] for cid in run.cases}
    assert all(h == reading for h in host.values())
