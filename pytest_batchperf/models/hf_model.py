"""A deterministic random-weight Llama in Hugging Face format, for vLLM and transformers.

Written with numpy, ``safetensors`` and ``tokenizers`` only (no torch, no hub). The weights
are the GGUF writer's, drawn from the same seed and renamed, and the vocabulary is the same,
so both formats describe one model. (llama.cpp permutes Q/K rows for its RoPE layout; with
random weights that changes nothing that matters for speed.)
"""

from __future__ import annotations

import json
from pathlib import Path

from .cache import cache_dir, cached
from .gguf_model import BOS, EOS, _weights
from .shapes import ModelShape

WRITER_VERSION = 1
UNK_TOKEN, BOS_TOKEN, EOS_TOKEN = "<unk>", "<s>", "</s>"
# Stored as float16: numpy has no bfloat16; engines cast at load time (dtype knob).
STORED_DTYPE = "float16"

_GGUF_TO_HF = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def hf_name(gguf_name: str) -> str:
    """llama.cpp tensor name -> Hugging Face Llama tensor name."""
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    if gguf_name == "output.weight":
        return "lm_head.weight"
    _, layer, part, suffix = gguf_name.split(".")
    return f"model.layers.{layer}.{_GGUF_TO_HF[part]}.{suffix}"


def vocabulary(vocab: int) -> list[str]:
    """The GGUF vocabulary as strings: control tokens, 256 byte tokens, word pieces."""
    words = [UNK_TOKEN, BOS_TOKEN, EOS_TOKEN] + [f"<0x{i:02X}>" for i in range(256)]
    if vocab < len(words) + 1:
        raise ValueError(f"vocab {vocab} is smaller than the {len(words) + 1} tokens required")
    return words + [f"\u2581w{i}" for i in range(vocab - len(words))]


def config(shape: ModelShape) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": shape.hidden,
        "intermediate_size": shape.ffn,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "head_dim": shape.head_dim,
        "vocab_size": shape.vocab,
        "max_position_embeddings": shape.max_positions,
        "rope_theta": shape.rope_theta,
        "rms_norm_eps": shape.norm_eps,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "initializer_range": 0.02,
        "bos_token_id": BOS,
        "eos_token_id": EOS,
        "torch_dtype": STORED_DTYPE,
        "use_cache": True,
    }


def _tokenizer(shape: ModelShape):
    """A word-level tokenizer over the synthetic vocabulary; text ``w5 w17`` round-trips."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    words = vocabulary(shape.vocab)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=UNK_TOKEN))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.add_special_tokens([AddedToken(t, special=True) for t in (UNK_TOKEN, BOS_TOKEN, EOS_TOKEN)])
    return tok


def write_hf(shape: ModelShape, directory: Path, seed: int = 0) -> None:
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    tensors = {
        hf_name(name): array.astype(STORED_DTYPE, copy=False)
        for name, array in _weights(shape, seed)
    }
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    del tensors
    _tokenizer(shape).save(str(directory / "tokenizer.json"))
    files = {
        "config.json": config(shape),
        "generation_config.json": {"bos_token_id": BOS, "eos_token_id": EOS, "do_sample": False},
        "tokenizer_config.json": {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": BOS_TOKEN,
            "eos_token": EOS_TOKEN,
            "unk_token": UNK_TOKEN,
            "pad_token": EOS_TOKEN,
            "add_bos_token": False,
            "add_eos_token": False,
            "model_max_length": shape.max_positions,
            "clean_up_tokenization_spaces": False,
        },
    }
    for name, content in files.items():
        (directory / name).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")


def hf_model_dir(shape: ModelShape, seed: int = 0) -> Path:
    """The synthetic model directory for ``shape``, written on first use and cached."""
    target = cache_dir() / f"{shape.name}-{shape.key(WRITER_VERSION)}-s{seed}" / "hf"
    return cached(target, lambda tmp: write_hf(shape, tmp, seed))
