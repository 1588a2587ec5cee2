"""The pass loop: every case's first run, then every case's second, ... (``plan``).

Used instead of pytest's own loop when a case takes more than one run (and not under
pytest-xdist, whose workers drive the loop). Each item runs once per pass; only its last
run is reported (pytest's normal protocol: output capture, warnings, JUnit), so a case
shows up once, with its final outcome. An earlier run that fails or skips is reported
when it happens, and the item runs no more. Runs items again the way pytest supports it
for re-running plugins (``runtestprotocol``, as pytest-rerunfailures does: pytest has no
public API for it). Where a pytest release moves it, ``SUPPORTED`` is False and every case
runs its runs back to back instead (``--batchperf-interleave case``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from .plan import Slot

try:
    from _pytest.runner import runtestprotocol
except ImportError:  # pragma: no cover - a pytest release that moved it
    SUPPORTED = False
else:
    SUPPORTED = True


def _schedule(
    items: Sequence[Any], plans: dict[Any, tuple[Slot, ...]]
) -> list[tuple[Any, Slot | None]]:
    """(item, slot) in run order: pass 1 is every item in collection order (other tests
    too), later passes the batchperf items that have that run."""
    longest = max(plans.values(), key=len)
    out: list[tuple[Any, Slot | None]] = [(i, plans[i][0] if i in plans else None) for i in items]
    for slot in longest[1:]:
        out += [(i, slot) for i in items if i in plans and slot in plans[i]]
    return out


def _log(item: Any, reports: list[Any]) -> None:
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for rep in reports:
        item.ihook.pytest_runtest_logreport(report=rep)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


def run_passes(session: pytest.Session, plans: dict[Any, tuple[Slot, ...]], bp: Any) -> None:
    schedule = _schedule(session.items, plans)
    ended: set[Any] = set()
    for k, (item, slot) in enumerate(schedule):
        if item in ended:
            continue
        nextitem: Any = next((i for i, _ in schedule[k + 1 :] if i not in ended), None)
        if nextitem is item:  # its own next run: tear the item down, keep its module's set-up
            nextitem = item.parent
        bp.enter_slot(slot)
        item.user_properties.clear()  # each run records them again
        if slot is None or slot == plans[item][-1]:
            item.ihook.pytest_runtest_protocol(item=item, nextitem=nextitem)
        else:
            reports = runtestprotocol(item, log=False, nextitem=nextitem)
            if any(r.failed or r.skipped for r in reports):
                _log(item, reports)
                ended.add(item)
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
    bp.enter_slot(None)
