"""The memory-bandwidth roofline of a decode step: how close a case runs to the hardware.

A decode step reads every weight once (the token-embedding gather aside) and the KV cache
of every sequence in the batch; at the GPU's peak memory bandwidth that takes
``bytes / bandwidth`` seconds, a lower bound on the step time. A case's fraction of the
roofline is that bound over its measured time per output token (TPOT p50, one token per
sequence per step). Informational unless a profile sets a tolerance for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models.shapes import ModelShape

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}


@dataclass(frozen=True)
class Roofline:
    shape: ModelShape
    bandwidth_gbs: float  # peak memory bandwidth of the GPUs the engine uses, together
    weight_bytes: float = 2.0  # bytes per parameter
    kv_bytes: float = 2.0  # bytes per cached K or V element

    def weights(self) -> float:
        """Bytes of weights a step reads: all but the embedding table (only B rows of it)."""
        return (self.shape.parameters - self.shape.vocab * self.shape.hidden) * self.weight_bytes

    def kv_per_token(self) -> float:
        s = self.shape
        return 2 * s.layers * s.kv_heads * s.head_dim * self.kv_bytes

    def bytes_per_step(self, batch: int, context: float) -> float:
        """Bytes read by one decode step of ``batch`` sequences of mean length ``context``."""
        return self.weights() + batch * context * self.kv_per_token()

    def step_s(self, batch: int, context: float) -> float:
        return self.bytes_per_step(batch, context) / (self.bandwidth_gbs * 1e9)

    def fraction_pct(self, tpot_ms: float, batch: int, context: float) -> float:
        """% of the roofline a measured TPOT reaches (100 = at the bandwidth limit)."""
        return 100.0 * self.step_s(batch, context) / (tpot_ms / 1e3)
