"""Where an engine computes: the machine kind that picks the hardware class, the default
noise between jobs and what an engine must check before it starts."""

from __future__ import annotations

from enum import StrEnum


class Device(StrEnum):  # str() and f-strings give "cpu", as torch and JSON want
    CPU = "cpu"
    CUDA = "cuda"

    @property
    def gpu(self) -> bool:
        return self is Device.CUDA

    @classmethod
    def of(cls, text: str | Device) -> Device:
        """``cuda``, ``cuda:1`` (torch's spelling of one GPU) or ``cpu``; ValueError else."""
        return cls(str(text).split(":", 1)[0])
