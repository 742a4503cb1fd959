"""Raising alerts from hits: dedupe window, idempotency, payload and audience."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from anwang.alerts import service as alerts
from anwang.alerts.events import BANNER, RAISED, UPDATED
from anwang.alerts.models import Alert, AlertHit
from anwang.checkpoints.facts import ReadFacts
from anwang.watchlist import service as wl
from tests.integration.watchlist.kit import EAST, NOW, Kit, read


def ingest(kit: Kit, *reads: ReadFacts, dedupe: int = 10) -> int:
    """What the checkpoints handler does: match, then raise — one transaction."""
    new = 0
    with kit.db.unit_of_work() as s:
        for r, hits in wl.match_reads(s, reads=list(reads)):
            new += alerts.raise_for_hits(s, read=r, hits=hits, dedupe_minutes=dedupe, now=NOW)
    return new


def all_alerts(kit: Kit) -> list[Alert]:
    with kit.db.unit_of_work() as s:
        return list(s.scalars(select(Alert).order_by(Alert.raised_at, Alert.id)))


def hit_count(kit: Kit) -> int:
    with kit.db.unit_of_work() as s:
        return int(s.scalar(select(func.count()).select_from(AlertHit)) or 0)


def test_a_hit_raises_an_alert_with_everything_to_verify(kit: Kit) -> None:
    eid = kit.entry("苏D12345", vehicle={"colour": "white", "make": "Toyota", "model": "Camry"})
    r = read("苏D12345", NOW, direction="out", lane=2)
    assert ingest(kit, r) == 1
    [a] = all_alerts(kit)
    assert (a.entry_id, a.read_id, a.status, a.count) == (eid, r.read_id, "open", 1)
    assert (a.checkpoint_code, a.direction, a.lane, a.match_kind, a.priority) == (
        "CP-W1", "out", 2, "exact", 1)
    assert a.jurisdiction_code == "32010101"
    assert a.audience_jurisdiction == "320101"  # the checkpoint's police station
    [ev] = kit.events("anwang.alerts.")
    assert ev.name == RAISED
    assert ev.audience.roles == ("dispatcher", "officer", "commander")
    assert ev.audience.jurisdiction == "320101"
    p = ev.payload
    assert (p["alert_id"], p["plate"], p["checkpoint"], p["direction"]) == (
        a.id, "苏D12345", "CP-W1", "out")
    assert (p["lat"], p["lon"]) == (r.lat, r.lon)
    assert p["match_kind"] == "exact" and p["reason"] == "stolen_vehicle"
    assert p["vehicle_description"] == "white Toyota Camry"
    assert p["banner"] == BANNER
    assert BANNER == "unconfirmed — verify the plate and vehicle visually before acting"
    assert p["captured_at"] == NOW.isoformat() and p["url"] == f"/alerts/{a.id}"
    assert kit.actions(f"alert:{a.id}") == ["anwang.alerts.alert.raised"]
    assert kit.audit_ok()


def test_the_same_read_twice_makes_one_alert_and_one_hit(kit: Kit) -> None:
    kit.entry("苏D12345")
    r = read("苏D12345")
    assert ingest(kit, r) == 1
    assert ingest(kit, r) == 0
    assert ingest(kit, r, r) == 0
    [a] = all_alerts(kit)
    assert a.count == 1 and hit_count(kit) == 1
    assert [e.name for e in kit.events("anwang.alerts.")] == [RAISED]


def test_repeated_hits_within_the_window_update_the_open_alert(kit: Kit) -> None:
    kit.entry("苏D12345")
    first, again = read("苏D12345", NOW), read("苏D12345", NOW + timedelta(minutes=9))
    assert ingest(kit, first) == 1
    assert ingest(kit, again) == 0
    [a] = all_alerts(kit)
    assert (a.count, a.last_seen_at, a.last_read_id, a.read_id) == (
        2, again.captured_at, again.read_id, first.read_id)
    assert [e.name for e in kit.events("anwang.alerts.")] == [RAISED, UPDATED]
    assert kit.events("anwang.alerts.")[1].payload["count"] == 2
    # Another checkpoint is another alert; so is a hit after the window.
    assert ingest(kit, read("苏D12345", NOW + timedelta(minutes=10), where=EAST)) == 1
    assert ingest(kit, read("苏D12345", NOW + timedelta(minutes=20))) == 1
    assert len(all_alerts(kit)) == 3
    assert hit_count(kit) == 4
    assert kit.audit_ok()


def test_the_window_is_a_setting(kit: Kit) -> None:
    kit.entry("苏D12345")
    assert ingest(kit, read("苏D12345", NOW), dedupe=1) == 1
    assert ingest(kit, read("苏D12345", NOW + timedelta(seconds=61)), dedupe=1) == 1
    with kit.db.unit_of_work(info={"settings": type("S", (), {"alert_dedupe_minutes": 5})()}) as s:
        r = read("苏D12345", NOW + timedelta(minutes=4))
        [(_, hits)] = wl.match_reads(s, reads=[r])
        assert alerts.raise_for_hits(s, read=r, hits=hits, now=NOW) == 0


def test_a_closed_alert_is_not_updated(kit: Kit) -> None:
    kit.entry("苏D12345")
    ingest(kit, read("苏D12345", NOW))
    [a] = all_alerts(kit)
    with kit.db.unit_of_work() as s:
        alerts.acknowledge_alert(s, alert_id=a.id, actor="cmd")
        alerts.close_alert(s, alert_id=a.id, actor="cmd", outcome="not_located")
    assert ingest(kit, read("苏D12345", NOW + timedelta(minutes=1))) == 1


def test_one_read_hitting_two_entries_raises_two_alerts(kit: Kit) -> None:
    exact = kit.entry("苏D12345", priority=1)
    partial = kit.entry("苏D?23*", priority=1, reason="wanted_case")
    assert ingest(kit, read("苏D12345")) == 2
    got = {a.entry_id: (a.match_kind, a.priority) for a in all_alerts(kit)}
    assert got == {exact: ("exact", 1), partial: ("partial", 2)}


def test_recipients_of_the_entry_are_the_audience(kit: Kit) -> None:
    kit.entry("苏D12345", recipient_roles=["officer"], recipient_jurisdictions=["3202", "320201"])
    ingest(kit, read("苏D12345"))
    [ev] = kit.events("anwang.alerts.")
    # 320201 lies inside 3202: pushing to 3202 reaches it already.
    assert (ev.audience.roles, ev.audience.jurisdiction) == (("officer",), "3202")


def test_a_checkpoint_outside_the_tree_alerts_city_wide(kit: Kit) -> None:
    kit.entry("苏D12345")
    ingest(kit, read("苏D12345", jurisdiction_code=None))
    [ev] = kit.events("anwang.alerts.")
    assert ev.audience.jurisdiction is None
    [a] = all_alerts(kit)
    assert a.jurisdiction_code is None


def test_hits_are_counted_for_the_transparency_report(kit: Kit) -> None:
    kit.entry("苏D12345")
    ingest(kit, read("苏D12345", NOW - timedelta(days=40)), read("苏D12345", NOW))
    ingest(kit, read("苏D12345", NOW + timedelta(minutes=1)))
    with kit.db.unit_of_work() as s:
        assert alerts.count_hits(s, since=NOW - timedelta(days=30)) == 2
        assert alerts.count_hits(s, since=NOW - timedelta(days=60)) == 3


def test_reads_of_alerts_are_held_for_retention(kit: Kit) -> None:
    kit.entry("苏D12345")
    r1, r2 = read("苏D12345", NOW), read("苏D12345", NOW + timedelta(hours=1))
    ingest(kit, r1)
    ingest(kit, r2)
    a1, a2 = all_alerts(kit)
    with kit.db.unit_of_work() as s:
        alerts.acknowledge_alert(s, alert_id=a1.id, actor="cmd", now=NOW)
        alerts.close_alert(s, alert_id=a1.id, actor="cmd", outcome="misread", now=NOW)
    with kit.db.unit_of_work() as s:
        ids = [r1.read_id, r2.read_id, "unrelated"]
        assert alerts.linked_read_ids(s, read_ids=ids) == {r2.read_id}
        assert alerts.linked_read_ids(s, read_ids=ids, closed_before=NOW) == {
            r1.read_id, r2.read_id}
