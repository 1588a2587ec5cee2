"""The transformers engine on real torch + transformers, on the synthetic tiny model, CPU."""

from importlib.util import find_spec

import pytest

from pytest_batchperf.engines import EngineUnavailable
from pytest_batchperf.engines import load_in_process as load_spec
from pytest_batchperf.measure.metrics import round_metrics
from pytest_batchperf.models.resolve import ModelError
from pytest_batchperf.profiles import BUILTIN, Profile
from pytest_batchperf.workload import Strategy, WorkloadSpec, build, uniform


def load(profile: Profile):
    return load_spec(profile.engine_spec())


# find_spec, not importorskip: torch must first be imported by the engine module, which
# sets its OpenMP wait policy before the import.
if find_spec("torch") is None or find_spec("transformers") is None:
    pytest.skip(
        "torch and transformers are not installed (extra 'transformers')", allow_module_level=True
    )

MIXED = WorkloadSpec(num_requests=8, prompt=uniform(4, 40), output=uniform(3, 12), seed=7)


@pytest.fixture(scope="module")
def engine():
    e = load(BUILTIN["transformers-tiny"])
    e.warmup()
    yield e
    e.close()


class GenerateSpy:
    """Records the inputs of every generate() call, then makes the real call."""

    def __init__(self, engine, monkeypatch):
        self.calls = []
        real = engine.model.generate

        def spy(**kw):
            self.calls.append(
                {
                    k: kw[k]
                    for k in ("input_ids", "attention_mask", "max_new_tokens", "min_new_tokens")
                }
            )
            return real(**kw)

        monkeypatch.setattr(engine.model, "generate", spy)


def test_static_waves_are_left_padded_and_decode_every_token(engine, monkeypatch):
    spy = GenerateSpy(engine, monkeypatch)
    wl = build(MIXED, engine.vocab_size)
    trace = engine.run_round(wl, Strategy.STATIC, 4)
    assert [len(w) for w in trace.waves] == [4, 4] and len(spy.calls) == 2
    for wave, call in zip(trace.waves, spy.calls):
        ids, mask = call["input_ids"], call["attention_mask"]
        assert ids.shape[1] == max(r.prompt_len for r in wave)
        assert (
            call["min_new_tokens"]
            == call["max_new_tokens"]
            == max(r.max_output_tokens for r in wave)
        )
        for row, r in enumerate(wave):
            pad = ids.shape[1] - r.prompt_len
            assert mask[row, :pad].sum() == 0 and mask[row, pad:].all()
            assert ids[row, pad:].tolist() == list(r.prompt_tokens)
    for tr, r in zip(sorted(trace.requests, key=lambda t: t.request_id), wl.requests):
        assert tr.output_tokens == r.max_output_tokens
        assert tr.token_times == sorted(tr.token_times) and tr.token_times[0] >= tr.scheduled
    assert 0 < round_metrics(trace, waves=True)["padding_waste_pct"] < 100


def test_a_wave_starts_after_the_previous_one_ends(engine):
    trace = engine.run_round(build(MIXED, engine.vocab_size), Strategy.STATIC, 4)
    by_id = {t.request_id: t for t in trace.requests}
    first_end = max(by_id[r.id].finished for r in trace.waves[0])
    assert min(by_id[r.id].scheduled for r in trace.waves[1]) >= first_end


def test_bucketing_pads_less_than_static(engine):
    wl = build(MIXED, engine.vocab_size)
    waste = {
        s: round_metrics(engine.run_round(wl, s, 4), waves=True)["padding_waste_pct"]
        for s in (Strategy.STATIC, Strategy.BUCKETED)
    }
    assert waste[Strategy.BUCKETED] < waste[Strategy.STATIC]


def test_continuous_is_refused_with_a_reason(engine):
    with pytest.raises(EngineUnavailable, match="continuous batching is not supported"):
        engine.run_round(build(MIXED, engine.vocab_size), Strategy.CONTINUOUS, 4)


def test_same_shape_and_vocabulary_as_the_llama_cpp_engine(engine):
    assert engine.vocab_size == 4096  # synthetic:tiny, as the GGUF the llama-cpp engine runs
    assert engine.describe()["model"] == BUILTIN["default"].model == "synthetic:tiny"


def test_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="no config.json there"):
        load(Profile("bad", "transformers", str(tmp_path / "nope")))


def test_cuda_profile_without_a_gpu_is_unavailable():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(EngineUnavailable, match="needs a CUDA GPU"):
        load_spec(BUILTIN["transformers-1b"].engine_spec(resolve=False))


SUITE = """
import pytest
from pytest_batchperf.workload import WorkloadSpec, fixed

WL = WorkloadSpec(num_requests=4, prompt=fixed(8), output=fixed(4), seed=1)

@pytest.mark.parametrize("strategy", ["static", "continuous"])
def test_sweep(batchperf, strategy):
    batchperf.run(WL, strategy, 2)
"""


def test_continuous_cases_skip_in_a_session(pytester):
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--benchmark-disable",
        "--batchperf-profile",
        "transformers-tiny",
        "--batchperf-set",
        "isolate=false",
        "--batchperf-rounds",
        "1",
        "--batchperf-warmup",
        "0",
        "-rs",
    )
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*continuous batching is not supported*"])
