"""Two workers raising alerts at once never deadlock (PostgreSQL).

A raiser takes an advisory lock per (entry, checkpoint) and the audit writer lock for
each hit's audit entry. Worker A raises a hit of entry 1 and then one of entry 2 in its
transaction while worker B raises them the other way round. Had the raisers taken the
advisory lock before the audit lock, A would hold the audit lock and wait for B's lock
of entry 2 while B holds that and waits for the audit lock: PostgreSQL would fail one of
them, and under a crashing, retrying worker the retries could run out. Both must commit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from anwang.alerts import service as alerts
from anwang.alerts.models import Alert, AlertHit
from anwang.checkpoints.facts import ReadFacts
from anwang.watchlist import service as wl
from tests.integration.watchlist.kit import EAST, NOW, WEST, Kit, read


def raise_hits(session: Any, facts: ReadFacts) -> None:
    for r, hits in wl.match_reads(session, reads=[facts]):
        alerts.raise_for_hits(session, read=r, hits=hits, dedupe_minutes=10, now=NOW)


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_two_raisers_taking_entries_in_opposite_orders_both_commit(kit: Kit) -> None:
    kit.entry("苏D11111")
    kit.entry("苏D22222")
    a_first_done = threading.Event()
    b_about_to_raise = threading.Event()
    errors: list[BaseException] = []

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)
                a_first_done.set()
                b_about_to_raise.set()

        return run

    def worker_a() -> None:
        with kit.db.unit_of_work() as s:
            raise_hits(s, read("苏D11111", NOW, where=WEST, read_id="a1"))
            a_first_done.set()
            assert b_about_to_raise.wait(10)
            threading.Event().wait(0.5)  # B is now waiting for a lock A holds
            raise_hits(s, read("苏D22222", NOW, where=EAST, read_id="a2"))

    def worker_b() -> None:
        assert a_first_done.wait(10)
        with kit.db.unit_of_work() as s:
            b_about_to_raise.set()
            raise_hits(s, read("苏D22222", NOW, where=EAST, read_id="b1"))
            raise_hits(s, read("苏D11111", NOW, where=WEST, read_id="b2"))

    threads = [threading.Thread(target=guarded(worker_a)),
               threading.Thread(target=guarded(worker_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    with kit.db.unit_of_work(readonly=True) as s:
        counts = sorted((a.checkpoint_code, a.count) for a in s.scalars(select(Alert)))
        hits = sorted(h.read_id for h in s.scalars(select(AlertHit)))
    assert counts == [(EAST["checkpoint_code"], 2), (WEST["checkpoint_code"], 2)]
    assert hits == ["a1", "a2", "b1", "b2"]
