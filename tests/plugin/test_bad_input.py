"""Bad input: each gives one clear line and a non-zero exit, never a traceback.

pytester runs pytest with the real plugin (and the real default llama-cpp profile where
an engine is involved) and its whole output is checked.
"""

from __future__ import annotations

import json

import pytest

from pytest_batchperf import SCHEMA_VERSION
from pytest_batchperf.measure import environment

SUITE = """
import pytest
from pytest_batchperf.workload import WorkloadSpec, fixed

WL = WorkloadSpec(num_requests=2, prompt=fixed(4), output=fixed(4), seed=1)

@pytest.mark.batchperf(rounds=1, warmup=0)
def test_case(batchperf, batch_size):
    batchperf.run(WL, "continuous", batch_size)
"""


def run(pytester, *args, suite=SUITE):
    pytester.makepyfile(test_suite=suite)
    return pytester.runpytest(
        "-p", "no:cacheprovider", "--benchmark-disable", "--batchperf-batch-sizes", "2", *args
    )


def assert_clear(result, message: str, exit_codes=(1, 4)) -> None:
    out = result.stdout.str() + result.stderr.str()
    assert result.ret in exit_codes, out
    assert "Traceback" not in out, out
    assert message in out, out


def test_unknown_profile(pytester):
    result = run(pytester, "--batchperf-profile", "no-such-profile")
    assert_clear(result, "unknown profile 'no-such-profile'; known profiles: default")


def test_unknown_metric_in_tolerance(pytester):
    result = run(pytester, "--batchperf-tolerance", "tokens_per_fortnight=5")
    assert_clear(result, "unknown metric 'tokens_per_fortnight'")


def test_unknown_metric_in_ini_tolerance(pytester):
    pytester.makeini("[pytest]\nbatchperf_tolerance = output_tok_s=5\n    bogus_metric=3\n")
    assert_clear(run(pytester), "unknown metric 'bogus_metric'")


def test_malformed_profiles_toml(pytester):
    bad = pytester.makefile(".toml", profiles="[profiles.mine\nengine = 'llama-cpp'\n")
    result = run(pytester, "--batchperf-profiles-file", str(bad), "--batchperf-profile", "mine")
    assert_clear(result, "profiles.toml: malformed TOML")


def test_profile_with_unknown_engine(pytester):
    bad = pytester.makefile(".toml", profiles="[profiles.mine]\nengine = 'tensorflow-lite'\n")
    result = run(pytester, "--batchperf-profiles-file", str(bad), "--batchperf-profile", "mine")
    assert_clear(result, "has engine 'tensorflow-lite'; choose from llama-cpp")


@pytest.mark.parametrize("sizes", ["0", "2,-4", "eight"])
def test_bad_batch_sizes_option(pytester, sizes):
    result = run(pytester, f"--batchperf-batch-sizes={sizes}")
    assert_clear(result, "--batchperf-batch-sizes")


@pytest.mark.parametrize("size", [0, -1])
def test_bad_batch_size_in_marker(pytester, size):
    suite = SUITE.replace(
        "@pytest.mark.batchperf(rounds=1, warmup=0)",
        f"@pytest.mark.batchperf(rounds=1, warmup=0, batch_sizes=[{size}])",
    )
    assert_clear(run(pytester, suite=suite), f"batch size must be a positive integer, got {size}")


@pytest.mark.parametrize(
    "option, value",
    [("--batchperf-rounds", "0"), ("--batchperf-alpha", "1.5"), ("--batchperf-timeout", "soon")],
)
def test_bad_numbers(pytester, option, value):
    assert_clear(run(pytester, f"{option}={value}"), option)


def test_model_file_not_gguf(pytester):
    fake = pytester.path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 this is a zip file, not a model" * 10)
    result = run(pytester, "--batchperf-set", f"model={json.dumps(str(fake))}")
    assert_clear(result, "is not a GGUF model file (starts with b'PK\\x03\\x04'")


def test_missing_model_file(pytester):
    missing = pytester.path / "nowhere" / "model.gguf"
    result = run(pytester, "--batchperf-set", f"model={json.dumps(str(missing))}")
    assert_clear(result, f"model file not found: {missing}")


def _write_baseline(pytester, data) -> None:
    path = pytester.path / "baselines" / environment.hardware_class("cpu") / "default.json"
    path.parent.mkdir(parents=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))


def test_baseline_from_newer_schema(pytester):
    _write_baseline(
        pytester,
        {
            "schema_version": SCHEMA_VERSION + 1,
            "profile": "default",
            "hardware_class": "x",
            "cases": {},
        },
    )
    assert_clear(run(pytester), "written by a newer pytest-batchperf")


def test_corrupt_baseline(pytester):
    _write_baseline(pytester, '{"schema_version": 1, "cases": {"a": ')
    assert_clear(run(pytester), "corrupt baseline (invalid JSON at line 1")


def test_bad_marker_tolerance(pytester):
    suite = SUITE.replace(
        "@pytest.mark.batchperf(rounds=1, warmup=0)",
        "@pytest.mark.batchperf(rounds=1, warmup=0, tolerance={'nope': 5})",
    )
    assert_clear(run(pytester, suite=suite), "unknown metric 'nope'")
