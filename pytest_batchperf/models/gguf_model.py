"""A deterministic random-weight Llama GGUF file, written with the ``gguf`` package."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .cache import cache_dir, cached
from .shapes import ModelShape

WRITER_VERSION = 1
N_CONTROL = 3  # <unk>, <s>, </s>
BOS, EOS = 1, 2


def vocabulary(vocab: int) -> tuple[list[bytes], list[float], list[int]]:
    """A SentencePiece-style vocabulary llama.cpp accepts: control tokens, the 256 byte
    fallback tokens, then distinct word pieces."""
    import gguf

    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{i:02X}>".encode() for i in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256
    if vocab < len(tokens) + 1:
        raise ValueError(f"vocab {vocab} is smaller than the {len(tokens) + 1} tokens required")
    for i in range(vocab - len(tokens)):
        tokens.append(f"\u2581w{i}".encode())
        types.append(gguf.TokenType.NORMAL)
    scores = [0.0] * N_CONTROL + [-1000.0] * 256 + [-float(i) for i in range(vocab - 259)]
    return tokens, scores, [int(t) for t in types]


def _weights(shape: ModelShape, seed: int):
    """(name, array) in llama.cpp's tensor names; numpy shape (out, in)."""
    rng = np.random.default_rng(seed)
    h, kv, std = shape.hidden, shape.kv_heads * shape.head_dim, 0.02

    def w(*dims):
        return (rng.standard_normal(dims, dtype=np.float32) * std).astype(np.float16)

    def ones(n):
        return np.ones(n, dtype=np.float32)

    yield "token_embd.weight", w(shape.vocab, h)
    for i in range(shape.layers):
        p = f"blk.{i}."
        yield p + "attn_norm.weight", ones(h)
        yield p + "attn_q.weight", w(h, h)
        yield p + "attn_k.weight", w(kv, h)
        yield p + "attn_v.weight", w(kv, h)
        yield p + "attn_output.weight", w(h, h)
        yield p + "ffn_norm.weight", ones(h)
        yield p + "ffn_gate.weight", w(shape.ffn, h)
        yield p + "ffn_up.weight", w(shape.ffn, h)
        yield p + "ffn_down.weight", w(h, shape.ffn)
    yield "output_norm.weight", ones(h)
    yield "output.weight", w(shape.vocab, h)


def write_gguf(shape: ModelShape, path: Path, seed: int = 0) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_name(f"batchperf-synthetic-{shape.name}")
    writer.add_context_length(shape.max_positions)
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.ffn)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_rope_freq_base(shape.rope_theta)
    writer.add_layer_norm_rms_eps(shape.norm_eps)
    writer.add_vocab_size(shape.vocab)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    tokens, scores, types = vocabulary(shape.vocab)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(BOS)
    writer.add_eos_token_id(EOS)
    writer.add_add_bos_token(False)
    for name, array in _weights(shape, seed):
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def gguf_path(shape: ModelShape, seed: int = 0) -> Path:
    """The synthetic GGUF for ``shape``, written on first use and cached."""
    target = cache_dir() / f"{shape.name}-{shape.key(WRITER_VERSION)}-s{seed}" / "model.gguf"
    return cached(target, lambda tmp: write_gguf(shape, tmp, seed))
