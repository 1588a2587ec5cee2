"""Named Llama-shaped model sizes. Speed depends on shapes, not on weights."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelShape:
    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    max_positions: int = 4096
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def parameters(self) -> int:
        h, kv = self.hidden, self.kv_heads * self.head_dim
        per_layer = 2 * h * h + 2 * h * kv + 3 * h * self.ffn + 2 * h
        return self.layers * per_layer + 2 * self.vocab * h + h

    def key(self, writer_version: int) -> str:
        blob = json.dumps({**asdict(self), "writer": writer_version}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


SHAPES: dict[str, ModelShape] = {
    s.name: s
    for s in (
        # CI on 2 CPU cores: big enough that decode is compute-bound, small enough to run
        # the default suites in minutes.
        ModelShape("tiny", hidden=256, layers=4, heads=4, kv_heads=2, ffn=768, vocab=4096),
        ModelShape("small", hidden=512, layers=8, heads=8, kv_heads=4, ffn=1536, vocab=8192),
        ModelShape("base", hidden=768, layers=12, heads=12, kv_heads=4, ffn=2048, vocab=32000),
        # TinyLlama's shape, about 1.1B parameters.
        ModelShape("1b", hidden=2048, layers=22, heads=32, kv_heads=4, ffn=5632, vocab=32000),
        # Llama 3.1 8B's shape, 8.03B parameters: its decode steps take a data-centre GPU
        # longer than vLLM's host work per step, so the GPU, not the host, sets the pace.
        ModelShape(
            "8b",
            hidden=4096,
            layers=32,
            heads=32,
            kv_heads=8,
            ffn=14336,
            vocab=128256,
            rope_theta=500000.0,
        ),
    )
}


def shape(name: str) -> ModelShape:
    try:
        return SHAPES[name]
    except KeyError:
        raise ValueError(
            f"unknown synthetic model shape {name!r}; choose from {', '.join(SHAPES)}"
        ) from None
