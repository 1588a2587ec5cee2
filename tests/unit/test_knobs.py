"""Every engine's knobs are typed: a typo or a wrong type is one line, before any engine loads."""

import pytest

from pytest_batchperf.engines import BUILTIN as ENGINES
from pytest_batchperf.engines.config import (
    KnobError,
    LlamaCppKnobs,
    OpenAIHTTPKnobs,
    VLLMKnobs,
)
from pytest_batchperf.profiles import BUILTIN, ProfileError


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_unknown_knob_is_refused_naming_it(engine):
    with pytest.raises(KnobError, match=r"^profile 'p': unknown .* knob\(s\) n_thread; known: "):
        ENGINES[engine].knobs.parse({"n_thread": 2}, "profile 'p'")


def test_each_built_in_engine_is_one_registry_entry():
    for name, engine in ENGINES.items():
        assert engine.knobs.engine == name
        assert engine.adapter.startswith("pytest_batchperf.engines.") and ":" in engine.adapter


def test_wrong_types_are_refused():
    with pytest.raises(KnobError, match="n_threads must be int"):
        LlamaCppKnobs.parse({"n_threads": "two"}, "p")
    with pytest.raises(KnobError, match="slowdown must be >= 0"):
        LlamaCppKnobs.parse({"slowdown": -0.1}, "p")
    with pytest.raises(KnobError, match="api must be 'offline' or 'async'"):
        VLLMKnobs.parse({"api": "sync"}, "p")
    with pytest.raises(KnobError, match="exactly one of url, command"):
        OpenAIHTTPKnobs.parse({"url": "http://x", "command": ["srv"]}, "p")


def test_values_pass_through_and_describe_shows_what_differs():
    k = VLLMKnobs.parse({"gpu_memory_utilization": 0.85, "tensor_parallel_size": 2}, "p")
    assert k.llm_kwargs() == {
        "gpu_memory_utilization": 0.85,
        "tensor_parallel_size": 2,
        "disable_log_stats": False,
    }
    assert k.gpus() == 2
    assert LlamaCppKnobs.parse({"n_ctx": 8192}, "p").describe() == {"n_ctx": 8192}


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_profiles_have_valid_knobs(name):
    BUILTIN[name].typed_knobs()


def test_profile_override_typo_is_a_profile_error():
    with pytest.raises(ProfileError, match="unknown llama-cpp knob"):
        BUILTIN["default"].with_overrides({"n_thread": 1}).typed_knobs()


def test_an_engine_on_several_gpus_starts_with_nvlink_multicast_off():
    tp2 = BUILTIN["vllm-synthetic-8b"].with_overrides({"tensor_parallel_size": 2})
    env = tp2.engine_spec(resolve=False).env
    assert env["NCCL_NVLS_ENABLE"] == "0" and env["NVSHMEM_DISABLE_NVLS"] == "1"
    assert env["TORCH_SYMM_MEM_DISABLE_MULTICAST"] == "1"
    mine = tp2.with_overrides({"env": {"NCCL_NVLS_ENABLE": "1"}})
    assert mine.engine_spec(resolve=False).env["NCCL_NVLS_ENABLE"] == "1"  # the profile wins
    one = BUILTIN["vllm-synthetic-8b"].engine_spec(resolve=False).env
    assert "NCCL_NVLS_ENABLE" not in one
