"""A profile's model, resolved once: the file or directory an engine loads, and its hash.

``synthetic:SHAPE`` is written by the plugin on first use (GGUF or Hugging Face format);
anything else is a local path, checked here so that a missing or wrong file is one line
before any engine starts. The hash has one spelling for every engine:
``synthetic-<shape>-<format>-<writer key>`` for synthetic models, else a digest of the
files' identity (sizes, head and tail of a GGUF file; config.json and weight sizes of a
directory). Resolution runs in the parent process, so the engine's process (which may be
another Python) needs no model writer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .shapes import ModelShape, shape


class ModelError(ValueError):
    """The model cannot be used; str() is one line."""


@dataclass(frozen=True)
class ModelRef:
    name: str  # as the profile gives it: synthetic:tiny, or a path
    path: Path | None = None  # what the engine loads; None where it is not ours to load
    hash: str = ""
    shape: ModelShape | None = None  # known for synthetic models and HF directories
    format: str = ""  # gguf, hf, or "" (unresolved: a running server's model)

    @property
    def target(self) -> str:
        return str(self.path) if self.path is not None else self.name


SYNTHETIC = "synthetic:"


def resolve(name: str, fmt: str) -> ModelRef:
    """``name`` resolved as ``fmt`` ("gguf", "hf"; "" leaves it as it is). Raises ModelError."""
    if not fmt:
        return ModelRef(name)
    if name.startswith(SYNTHETIC):
        try:
            s = shape(name[len(SYNTHETIC) :])
        except ValueError as exc:
            raise ModelError(str(exc)) from None
        try:
            if fmt == "gguf":
                from .gguf_model import WRITER_VERSION, gguf_path

                path = gguf_path(s)
            else:
                from .hf_model import WRITER_VERSION, hf_model_dir

                path = hf_model_dir(s)
        except ImportError as exc:
            extra = "llama" if fmt == "gguf" else "transformers"
            raise ModelError(
                f"writing the synthetic {fmt} model {name} needs the Python "
                f"package {exc.name!r}: pip install 'pytest-batchperf[{extra}]'"
            ) from None
        return ModelRef(name, path, f"synthetic-{s.name}-{fmt}-{s.key(WRITER_VERSION)}", s, fmt)
    path = Path(name).expanduser()
    if fmt == "gguf":
        return ModelRef(name, path, _gguf_hash(path), None, fmt)
    return ModelRef(name, path, _hf_hash(path), _hf_shape(path), fmt)


def check_gguf(path: Path) -> None:
    """Raise ModelError with a one-line reason if ``path`` is not a GGUF file."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise ModelError(f"model file not found: {path}") from None
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    if magic != b"GGUF":
        raise ModelError(f"{path} is not a GGUF model file (starts with {magic!r}, not b'GGUF')")


def _gguf_hash(path: Path) -> str:
    check_gguf(path)
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:  # head and tail: cheap, and changes with any re-quantisation
        h.update(f.read(1 << 22))
        f.seek(max(0, size - (1 << 22)))
        h.update(f.read())
    return h.hexdigest()[:16]


def _hf_hash(path: Path) -> str:
    config = path / "config.json"
    if not config.is_file():
        raise ModelError(
            f"model {path}: not a Hugging Face model directory (no config.json "
            "there); nothing is ever downloaded"
        )
    h = hashlib.sha256(config.read_bytes())
    for weights in sorted(path.glob("*.safetensors")):
        h.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return h.hexdigest()[:16]


def _hf_shape(path: Path) -> ModelShape | None:
    """The Llama-style shape in config.json, where it has one (for the roofline)."""
    try:
        c = json.loads((path / "config.json").read_text())
        return ModelShape(
            path.name,
            c["hidden_size"],
            c["num_hidden_layers"],
            c["num_attention_heads"],
            c.get("num_key_value_heads", c["num_attention_heads"]),
            c["intermediate_size"],
            c["vocab_size"],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
