"""Progress of long cases on the terminal, without flooding CI logs.

Lines only, never carriage-return spinners (CI logs keep every byte, and a spinner
interleaves badly with pytest's own output): with ``-v`` one line as each case starts;
otherwise a line only while a case runs long, at most one per ``interval_s``, so short
cases print nothing beyond pytest's own dots.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

# Quiet for this long into a case, then one line per this long at most.
DEFAULT_INTERVAL_S = 30.0


class Progress:
    def __init__(
        self,
        write_line: Callable[[str], None],
        total: int,
        verbose: int = 0,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        unit: str = "cases",  # "runs" where cases take several (passes count each run)
    ):
        self._write = write_line
        self.total = total
        self.unit = unit
        self.verbose = verbose
        self.interval_s = interval_s
        self._clock = clock
        self.done = 0
        self._case = ""
        self._what = ""
        self._rounds = 0
        self._last = 0.0

    def _counter(self) -> str:
        if not self.total:
            return f"[{self.done} done]"
        return f"[{self.done}/{self.total} {self.unit} done]"

    def start(
        self, case_id: str, batch_size: int, strategy: str, rounds: int, slot: Any = None
    ) -> None:
        self._case = case_id
        run = ""
        if slot is not None and (slot.index > 1 or slot.side.value != "candidate"):
            run = f", run {slot.index}" + (
                f" ({slot.side.value})" if slot.side.value != "candidate" else ""
            )
        self._what = f"batch size {batch_size}, {strategy}{run}"
        self._rounds = rounds
        self._last = self._clock()
        if self.verbose > 0:
            self._write(
                f"batchperf {self._counter()} {case_id}: {self._what}, "
                f"{rounds} rounds after warm-up"
            )

    def round_done(self, index: int) -> None:
        """``index`` measured rounds of the current case are done."""
        now = self._clock()
        if now - self._last >= self.interval_s:
            self._last = now
            self._write(
                f"batchperf {self._counter()} {self._case}: {self._what}, "
                f"round {index}/{self._rounds}"
            )

    def finish(self) -> None:
        self.done += 1
        self._case = ""

    def rounds(self, run_rounds: Any) -> Callable[[Callable[[], None], int], None]:
        """Wrap a ``run_rounds(fn, rounds)`` driver (measure_run's hook) so each measured
        round reports here; None (measure_run's own loop) is wrapped too."""

        def driver(fn: Callable[[], None], rounds: int) -> None:
            count = 0

            def counted() -> None:
                nonlocal count
                fn()
                count += 1
                self.round_done(count)

            if run_rounds is None:
                for _ in range(rounds):
                    counted()
            else:
                run_rounds(counted, rounds)

        return driver


def for_pytest(config, total: int, unit: str = "cases") -> Progress | None:
    """A Progress writing to pytest's terminal, or None where nobody would see it
    (xdist workers, no terminal reporter)."""
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is None or hasattr(config, "workerinput"):
        return None
    capman = config.pluginmanager.get_plugin("capturemanager")

    def write_line(text: str) -> None:
        # Output is captured while a test runs; lift capture so the line reaches the terminal.
        if capman is None:
            tr.write_line(text)
            return
        with capman.global_and_fixture_disabled():
            tr.write_line(text)

    return Progress(write_line, total, verbose=config.get_verbosity(), unit=unit)
