"""The engine processes of a run: one live at a time, started for a slot (a side and a run
index; an extension run of a case gets its own), reused by every case of that slot, and
closed before the next starts, so two never hold a GPU at once."""

from __future__ import annotations

from collections.abc import Mapping

from . import engines
from .engines.base import Engine, EngineError, EngineSpec, EngineUnavailable
from .plan import Side, Slot
from .profiles import Profile


class EnginePool:
    def __init__(
        self,
        sides: Mapping[Side, Profile],
        specs: Mapping[Side, EngineSpec],
        timeout_s: float = 0.0,  # 0: each profile's own
    ):
        self.sides, self.specs, self.timeout_s = sides, specs, timeout_s
        self.info: dict[Side, dict] = {}  # each side's engine, as its first start described it
        self._engine: Engine | None = None
        self._key: tuple | None = None
        self._failed: dict[tuple, EngineError] = {}

    def engine_for(self, slot: Slot, case_id: str) -> Engine:
        """The engine process of ``slot``: the live one, or a fresh one. A slot whose start
        failed is not retried: its later cases fail at once with the same message."""
        key: tuple = (slot.side, slot.index) + ((case_id,) if slot.extension else ())
        if self._engine is not None and self._key == key:
            return self._engine
        if key in self._failed:
            raise self._failed[key]
        self.close()
        profile = self.sides[slot.side]
        try:
            engine = engines.start(
                self.specs[slot.side],
                self.timeout_s or profile.timeout_s,
                profile.isolate,
                profile.python,
            )
        except EngineUnavailable:
            raise
        except EngineError as exc:
            failed = EngineError(f"engine of profile {profile.name!r} failed to start: {exc}")
            self._failed[key] = failed
            raise failed from None
        self._engine, self._key = engine, key
        if slot.side not in self.info:
            process = getattr(engine, "process", None)
            self.info[slot.side] = {
                **engine.describe(),
                **({"process": process} if process else {}),
            }
        return engine

    def close(self) -> None:
        engine, self._engine, self._key = self._engine, None, None
        if engine is not None:
            engine.close()
