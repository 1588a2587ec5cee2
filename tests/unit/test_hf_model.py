"""The Hugging Face synthetic model writer: files, shapes, tokenizer, and (where torch and
transformers are installed) a real load and generate."""

import importlib.util
import json

import numpy as np
import pytest

from pytest_batchperf.models import shape
from pytest_batchperf.models.hf_model import hf_model_dir, hf_name, vocabulary

pytest.importorskip("safetensors", reason="the HF model writer needs safetensors")
pytest.importorskip("tokenizers", reason="the HF model writer needs tokenizers")

TINY = shape("tiny")
FILES = {
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
}


@pytest.fixture(scope="module")
def tiny_dir():
    # The shared model cache (conftest points it somewhere stable): written once per machine.
    return hf_model_dir(TINY)


def test_writes_every_file_once_and_caches(tiny_dir):
    assert {p.name for p in tiny_dir.iterdir()} >= FILES
    mtime = (tiny_dir / "model.safetensors").stat().st_mtime_ns
    assert hf_model_dir(TINY) == tiny_dir
    assert (tiny_dir / "model.safetensors").stat().st_mtime_ns == mtime


def test_config_matches_shape(tiny_dir):
    cfg = json.loads((tiny_dir / "config.json").read_text())
    assert cfg["model_type"] == "llama"
    assert (
        cfg["hidden_size"],
        cfg["num_hidden_layers"],
        cfg["num_attention_heads"],
        cfg["num_key_value_heads"],
        cfg["intermediate_size"],
        cfg["vocab_size"],
    ) == (TINY.hidden, TINY.layers, TINY.heads, TINY.kv_heads, TINY.ffn, TINY.vocab)


def test_tensor_shapes_and_parameter_count(tiny_dir):
    from safetensors.numpy import load_file

    tensors = load_file(str(tiny_dir / "model.safetensors"))
    kv = TINY.kv_heads * TINY.head_dim
    assert tensors["model.embed_tokens.weight"].shape == (TINY.vocab, TINY.hidden)
    assert tensors["lm_head.weight"].shape == (TINY.vocab, TINY.hidden)
    assert tensors["model.layers.3.self_attn.k_proj.weight"].shape == (kv, TINY.hidden)
    assert tensors["model.layers.0.mlp.down_proj.weight"].shape == (TINY.hidden, TINY.ffn)
    assert "model.layers.4.input_layernorm.weight" not in tensors
    assert sum(t.size for t in tensors.values()) == TINY.parameters
    assert all(t.dtype == np.float16 for t in tensors.values())
    # random weights, not zeros
    assert float(np.abs(tensors["model.layers.0.self_attn.q_proj.weight"]).mean()) > 0.01


def test_tokenizer_covers_vocab_and_round_trips(tiny_dir):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_dir / "tokenizer.json"))
    assert tok.get_vocab_size() == TINY.vocab
    ids = tok.encode("w0 w5 w100", add_special_tokens=False).ids
    assert ids == [259, 264, 359]
    assert tok.decode(ids) == "w0 w5 w100"
    assert tok.token_to_id("</s>") == 2


def test_names_and_vocabulary_errors():
    assert hf_name("blk.7.ffn_gate.weight") == "model.layers.7.mlp.gate_proj.weight"
    assert hf_name("output.weight") == "lm_head.weight"
    with pytest.raises(ValueError, match="smaller than"):
        vocabulary(100)


@pytest.mark.skipif(
    not (importlib.util.find_spec("torch") and importlib.util.find_spec("transformers")),
    reason="loading the model needs torch and transformers",
)
def test_transformers_loads_and_generates(tiny_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    assert model.config.num_hidden_layers == TINY.layers
    prompt = torch.tensor([[259, 260, 261, 262]])
    out = model.generate(prompt, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape == (1, 8)
    assert tok.decode(out[0, :4]) == "w0 w1 w2 w3"
