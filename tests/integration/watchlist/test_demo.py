"""The demo watch list: approved entries that the simulator's plates hit."""

from __future__ import annotations

from sqlalchemy import func, select

from anwang.core.events import utcnow
from anwang.watchlist import demo
from anwang.watchlist.models import WatchEntry
from tests.integration.watchlist.kit import Kit, read


def test_demo_entries_are_approved_matched_and_loaded_once(kit: Kit) -> None:
    with kit.db.unit_of_work() as s:
        assert demo.load_demo_entries(s, owner="ana", approver="cmd") == len(demo.DEMO_ENTRIES)
    with kit.db.unit_of_work() as s:
        assert demo.load_demo_entries(s, owner="ana", approver="cmd") == 0
        assert s.scalar(select(func.count()).select_from(WatchEntry)) == len(demo.DEMO_ENTRIES)
        statuses = set(s.scalars(select(WatchEntry.status)))
        assert statuses == {"active"}
    reads = [read(p, utcnow()) for p in demo.demo_plates()]
    got = kit.match(*reads)
    assert set(got) == {r.read_id for r in reads}
    assert kit.audit_ok()
