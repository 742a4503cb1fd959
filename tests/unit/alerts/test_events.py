"""The alert events' payload (what the map and alerts.js read) and the pages' labels."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from anwang.alerts import events, pages
from anwang.alerts.models import Alert
from anwang.alerts.service import Outcome, Status
from anwang.core.events import Event
from anwang.watchlist import pages as wl_pages
from anwang.watchlist.service import Reason

AT = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
ALERTS_JS = Path(pages.__file__).parent.parent / "web" / "static" / "js" / "alerts.js"


def alert() -> Alert:
    return Alert(
        id="01J0000000000000000000000A", entry_id="e1", read_id="r1", last_read_id="r1",
        checkpoint_code="CP-W1", checkpoint_name="西门卡口", checkpoint_kind="police_checkpoint",
        direction="in", lane=1, plate="苏D12345", pattern="苏D12345", match_kind="exact",
        priority=1, reason="stolen_vehicle", case_ref="C-1", vehicle={"colour": "white"},
        lat=31.75, lon=119.85, jurisdiction_code="32010101", status="open", count=1,
        first_seen_at=AT, last_seen_at=AT, raised_at=AT, escalation_level=0,
        audience_roles=["dispatcher"], audience_jurisdiction="320101",
    )


def test_the_payload_carries_what_to_verify_and_where() -> None:
    ev = events.alert_event(events.RAISED, alert(), vehicle_description="white",
                            roles=("dispatcher",), jurisdiction="320101")
    p = ev.payload
    for key in ("alert_id", "url", "plate", "checkpoint", "checkpoint_name", "direction",
                "captured_at", "match_kind", "reason", "vehicle_description", "lat", "lon",
                "banner", "priority", "count", "summary"):
        assert key in p, key
    assert p["banner"] == events.BANNER
    assert isinstance(p["lat"], float) and isinstance(p["lon"], float)
    # The event survives the trip through JSON (the outbox and NATS).
    assert Event.from_json(ev.to_json()) == ev


def test_the_script_reads_the_names_and_fields_the_events_have() -> None:
    js = ALERTS_JS.read_text(encoding="utf-8")
    for name in (events.RAISED, events.UPDATED, events.ESCALATED):
        assert f'"{name}"' in js
    payload = events.payload(alert(), vehicle_description="")
    for field in set(re.findall(r"\bp\.([a-z_]+)", js)):
        assert field in payload, f"alerts.js reads payload.{field}, which events.py lacks"


def test_the_pages_banner_is_the_apis() -> None:
    assert pages.BANNER_TEXT == events.BANNER


def test_every_state_reason_and_outcome_has_a_label() -> None:
    assert set(pages.STATUS_LABELS) == {s.value for s in Status}
    assert set(pages.OUTCOME_LABELS) == {o.value for o in Outcome}
    assert set(wl_pages.REASON_LABELS) == {r.value for r in Reason}
    assert set(pages.ACTION_LABELS) == {
        f"anwang.alerts.alert.{verb}"
        for verb in ("raised", "updated", "escalated", "acknowledged", "closed")}
