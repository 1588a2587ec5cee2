"""Seeded, reproducible workloads and the cases that run them: pure data.

The same spec and seed always give the same requests, so a baseline and a later run
measure the same thing. A ``CaseSpec`` is what one case runs (workload, strategy, batch
size, SLO); it travels as typed data and is stored in results as a plain dict.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .strategies import Strategy

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Request:
    id: int
    prompt_tokens: tuple[int, ...]
    max_output_tokens: int
    arrival_s: float = 0.0  # offset from the round's start
    priority: int = 0  # lower value = more important (vLLM's convention)
    prefix_group: int | None = None

    @property
    def prompt_len(self) -> int:
        return len(self.prompt_tokens)


@dataclass(frozen=True)
class LengthDist:
    """Distribution of a token count: fixed, uniform, lognormal, or values from a file."""

    kind: str = "fixed"
    value: int = 128  # fixed; the median for lognormal
    low: int = 1
    high: int = 1
    sigma: float = 0.5
    path: str | None = None

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        import numpy as np

        if self.kind == "fixed":
            out = np.full(n, self.value)
        elif self.kind == "uniform":
            out = rng.integers(self.low, self.high + 1, size=n)
        elif self.kind == "lognormal":
            out = np.rint(rng.lognormal(np.log(self.value), self.sigma, size=n))
            out = np.clip(out, self.low, self.high if self.high > self.low else None)
        elif self.kind == "file":
            values = [int(x) for x in Path(str(self.path)).read_text().split()]
            if not values:
                raise ValueError(f"length file {self.path} holds no numbers")
            out = np.resize(np.array(values), n)
        else:
            raise ValueError(f"unknown length distribution {self.kind!r}")
        return np.maximum(out.astype(int), 1)


def fixed(n: int) -> LengthDist:
    return LengthDist("fixed", value=n)


def uniform(low: int, high: int) -> LengthDist:
    return LengthDist("uniform", low=low, high=high)


def lognormal(median: int, sigma: float = 0.5, low: int = 1, high: int = 0) -> LengthDist:
    return LengthDist("lognormal", value=median, sigma=sigma, low=low, high=high)


@dataclass(frozen=True)
class Arrival:
    """When requests arrive: all at t0, Poisson at ``rate`` req/s, or gamma with burstiness."""

    kind: str = "t0"
    rate: float = 0.0
    burstiness: float = 1.0  # gamma shape; 1.0 is Poisson, < 1 burstier

    def offsets(self, rng: np.random.Generator, n: int) -> np.ndarray:
        import numpy as np

        if self.kind == "t0" or self.rate <= 0:
            return np.zeros(n)
        if self.kind == "poisson":
            gaps = rng.exponential(1.0 / self.rate, size=n)
        elif self.kind == "gamma":
            gaps = rng.gamma(self.burstiness, 1.0 / (self.rate * self.burstiness), size=n)
        else:
            raise ValueError(f"unknown arrival process {self.kind!r}")
        gaps[0] = 0.0
        return np.cumsum(gaps)


@dataclass(frozen=True)
class WorkloadSpec:
    num_requests: int = 32
    prompt: LengthDist = field(default_factory=lambda: fixed(32))
    output: LengthDist = field(default_factory=lambda: fixed(32))
    arrival: Arrival = field(default_factory=Arrival)
    seed: int = 0
    shared_prefix_tokens: int = 0  # a system prompt every request of a group shares
    prefix_groups: int = 1
    priority_classes: int = 1  # requests alternate between this many priority classes
    name: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WorkloadSpec:
        d = dict(d)
        return cls(
            **{
                **d,
                "prompt": LengthDist(**d.get("prompt", {})),
                "output": LengthDist(**d.get("output", {})),
                "arrival": Arrival(**d.get("arrival", {})),
            }
        )

    def key(self) -> str:
        """Short stable hash: changes whenever the generated requests would change."""
        return _hash(self.to_dict())

    def family(self) -> str:
        """The key of the workload but for its size: a GPU profile's min_waves gives each
        batch size its own number of requests, and those cases are still one sweep."""
        return _hash({k: v for k, v in self.to_dict().items() if k != "num_requests"})


def _hash(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class SLO:
    """A request is 'good' when it meets both bounds (None = unbounded)."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None

    @property
    def set(self) -> bool:
        return self.ttft_ms is not None or self.tpot_ms is not None


@dataclass(frozen=True)
class CaseSpec:
    """What one case runs: the workload, how it is batched, and the SLO goodput counts."""

    workload: WorkloadSpec
    strategy: Strategy
    batch_size: int
    slo: SLO = SLO()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "strategy": self.strategy.value,
            "batch_size": self.batch_size,
            "workload": self.workload.to_dict(),
            "workload_key": self.workload.key(),
        }
        if self.slo.set:
            d["slo"] = {"ttft_ms": self.slo.ttft_ms, "tpot_ms": self.slo.tpot_ms}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CaseSpec | None:
        """The spec stored in results, or None where a file holds no complete one (a case
        of a custom test that recorded other parameters)."""
        try:
            slo = d.get("slo") or {}
            return cls(
                WorkloadSpec.from_dict(d["workload"]),
                Strategy(d["strategy"]),
                int(d["batch_size"]),
                SLO(slo.get("ttft_ms"), slo.get("tpot_ms")),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def sweep_key(self) -> tuple[str, str]:
        """(strategy, workload family): what the cases of one batch-size sweep share."""
        return self.strategy.value, self.workload.family()

    def with_requests(self, n: int) -> CaseSpec:
        return replace(self, workload=replace(self.workload, num_requests=n))


@dataclass(frozen=True)
class Workload:
    spec: WorkloadSpec | None
    requests: tuple[Request, ...]

    @property
    def prompt_tokens(self) -> int:
        return sum(r.prompt_len for r in self.requests)

    @property
    def output_tokens(self) -> int:
        return sum(r.max_output_tokens for r in self.requests)


def build(spec: WorkloadSpec, vocab_size: int, reserved_tokens: int = 4) -> Workload:
    """Generate the requests of ``spec`` for a model with ``vocab_size`` tokens.

    Token ids avoid the first ``reserved_tokens`` ids (BOS/EOS/PAD/UNK in the synthetic
    tokenizers) so that prompts never contain control tokens.
    """
    import numpy as np

    if spec.num_requests < 1:
        raise ValueError("a workload needs at least one request")
    if vocab_size <= reserved_tokens + 1:
        raise ValueError(f"vocabulary of {vocab_size} tokens is too small")
    rng = np.random.default_rng(spec.seed)
    n = spec.num_requests
    prompt_lens = spec.prompt.sample(rng, n)
    output_lens = spec.output.sample(rng, n)
    arrivals = spec.arrival.offsets(rng, n)
    prefixes = [
        tuple(int(t) for t in rng.integers(reserved_tokens, vocab_size, spec.shared_prefix_tokens))
        for _ in range(max(1, spec.prefix_groups))
    ]
    requests = []
    for i in range(n):
        group = i % len(prefixes) if spec.shared_prefix_tokens else None
        prefix = prefixes[group] if group is not None else ()
        body = tuple(int(t) for t in rng.integers(reserved_tokens, vocab_size, int(prompt_lens[i])))
        requests.append(
            Request(
                id=i,
                prompt_tokens=prefix + body,
                max_output_tokens=int(output_lens[i]),
                arrival_s=float(arrivals[i]),
                priority=i % max(1, spec.priority_classes),
                prefix_group=group,
            )
        )
    return Workload(spec, tuple(requests))
