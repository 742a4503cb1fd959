"""Raising the alerts of a batch of reads at once (``raise_for_reads``, what storing a
batch does) ends as raising them read by read (``raise_for_hits``): the same alerts with
the same counts, times and latest reads, the same hits, audit entries and events."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select

from anwang.alerts import service as alerts
from anwang.alerts.models import Alert, AlertHit
from anwang.core.audit import AuditEntry
from anwang.watchlist import service as wl
from tests.integration.watchlist.kit import EAST, NOW, WEST, Kit, read

PLATES = ("苏D11111", "苏D22222", "苏D33333")


def scenario(seed: int) -> list[tuple[int, dict[str, Any], int, int]]:
    """(plate index, checkpoint, minutes after NOW, lane) of 2–14 reads: vehicles seen
    again within the dedupe window and after it, at either checkpoint, out of order."""
    rng = random.Random(seed)
    return [(rng.randrange(3), rng.choice([WEST, EAST]), rng.choice([0, 3, 9, 11, 25, 40]),
             rng.randrange(1, 4)) for _ in range(rng.randrange(2, 15))]


def raise_all(kit: Kit, prefix: str, plan: list[tuple[int, dict[str, Any], int, int]],
              *, batched: bool, tag: str = "") -> None:
    facts = [read(f"{prefix}{PLATES[p][2:]}", NOW + timedelta(minutes=m), where=where,
                  lane=lane, read_id=f"{prefix}-{tag}{n}")
             for n, (p, where, m, lane) in enumerate(plan)]
    with kit.db.unit_of_work() as s:
        found = wl.match_reads(s, reads=facts)
        if batched:
            alerts.raise_for_reads(s, found, dedupe_minutes=10, now=NOW)
        else:
            for r, hits in found:
                alerts.raise_for_hits(s, read=r, hits=hits, dedupe_minutes=10, now=NOW)


def outcome(kit: Kit, prefix: str, entries: dict[str, int]) -> Any:
    """What was raised, with the ids of entries, reads and alerts made comparable."""
    def rid(read_id: str) -> str:
        return read_id.split("-", 1)[1]

    with kit.db.unit_of_work() as s:
        rows = list(s.scalars(select(Alert).where(Alert.plate.startswith(prefix))))
        names = {a.id: (entries[a.entry_id], a.checkpoint_code, rid(a.read_id)) for a in rows}
        got = sorted(
            (names[a.id], a.count, a.first_seen_at, a.last_seen_at, rid(a.last_read_id),
             a.lane, a.priority, a.status, a.audience_jurisdiction)
            for a in rows
        )
        hits = sorted((rid(h.read_id), entries[h.entry_id], names[h.alert_id])
                      for h in s.scalars(select(AlertHit).where(AlertHit.plate.startswith(prefix))))
        audit = [(e.action, names[e.subject.removeprefix(alerts.SUBJECT)],
                  {k: entries[v] if k == "entry" else v for k, v in (e.data or {}).items()
                   if k != "read"}, rid((e.data or {})["read"]))
                 for e in s.scalars(select(AuditEntry).where(
                     AuditEntry.subject.in_([alerts.SUBJECT + a for a in names]))
                     .order_by(AuditEntry.seq))]
    events = [(e.name, names[e.payload["alert_id"]], e.payload["count"])
              for e in kit.events("anwang.alerts.") if e.payload["alert_id"] in names]
    return got, hits, audit, events


@pytest.mark.parametrize("seed", range(12))
def test_a_batch_raises_what_its_reads_raise_one_by_one(kit: Kit, seed: int) -> None:
    plan = scenario(seed)
    entries: dict[str, int] = {}
    for n, plate in enumerate(PLATES):
        # The same entries twice over: one set for each way of raising.
        entries[kit.entry(f"苏A{plate[2:]}", priority=1 + n % 3)] = n
        entries[kit.entry(f"苏B{plate[2:]}", priority=1 + n % 3)] = n
    wl.reset_index_cache()
    # Alerts already open before the batch, for the batch to join.
    early = [(p, where, -5, 1) for p, where, _, _ in plan[:2]]
    raise_all(kit, "苏A", early, batched=False, tag="early")
    raise_all(kit, "苏B", early, batched=False, tag="early")
    raise_all(kit, "苏A", plan, batched=False)
    raise_all(kit, "苏B", plan, batched=True)
    one_by_one, batch = outcome(kit, "苏A", entries), outcome(kit, "苏B", entries)
    assert batch == one_by_one
    assert len(one_by_one[1]) == len(plan) + len(early)  # every read counted once
    # Raising the batch again changes nothing.
    raise_all(kit, "苏B", plan, batched=True)
    assert outcome(kit, "苏B", entries) == one_by_one
    assert kit.audit_ok()


def test_hits_of_several_reads_are_looked_up_in_few_statements(kit: Kit) -> None:
    """A batch of 40 hits costs a few statements, not some per hit."""
    kit.entry("苏D12345")
    wl.reset_index_cache()
    facts = [read("苏D12345", NOW + timedelta(minutes=n), where=[WEST, EAST][n % 2])
             for n in range(40)]
    statements: list[str] = []
    with kit.db.unit_of_work() as s:
        found = wl.match_reads(s, reads=facts)
        listen = (s.connection(), "before_cursor_execute")

        def count(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
            statements.append(sql)

        event.listen(*listen, count)
        try:
            # Seen every two minutes at each checkpoint: one alert at each.
            assert alerts.raise_for_reads(s, found, dedupe_minutes=10, now=NOW) == 2
        finally:
            event.remove(*listen, count)
    # The look-ups once, an insert of each new alert and its event, the updates, one
    # insert of the 40 hits and of their 40 audit entries: read by read it was over 300.
    assert len(statements) <= 25, statements
    assert sum("INSERT INTO alert_hits" in sql for sql in statements) == 1
    assert sum("INSERT INTO audit_log" in sql for sql in statements) == 1
