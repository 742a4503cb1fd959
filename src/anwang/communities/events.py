"""Names and payloads of the events the community package publishes.

An alarm event carries what the live map and feed need (``static/js/feed.js`` shows
``summary`` first; ``static/js/map.js`` drops a marker at ``lat``/``lon``) and what the
alarm pages refresh from. Its ``audience`` is the alarm's recipients at its current
level (:func:`anwang.communities.rules.audience_roles`) in the alarm's jurisdiction —
the community's grid — which every user whose jurisdiction contains that grid overlaps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from anwang.communities.rules import audience_roles, level_name
from anwang.core.events import Audience, Event, EventContext

if TYPE_CHECKING:
    from anwang.communities.models import DeviceAlarm

RAISED = "anwang.communities.alarm.raised"
ESCALATED = "anwang.communities.alarm.escalated"
ACKNOWLEDGED = "anwang.communities.alarm.acknowledged"
CLEARED = "anwang.communities.alarm.cleared"
CLOSED = "anwang.communities.alarm.closed"
#: Devices of one community found silent by one offline scan (one event per community,
#: not one per device: a power cut or a broken gateway silences many at once).
OUTAGE = "anwang.communities.outage.detected"

ALARM_EVENTS = (RAISED, ESCALATED, ACKNOWLEDGED, CLEARED, CLOSED)


def alarm_payload(alarm: DeviceAlarm, *, community_name: str | None = None) -> dict[str, Any]:
    where = community_name or alarm.community_code
    return {
        "alarm_id": alarm.id,
        "url": f"/community-alarms/{alarm.id}",
        "device": alarm.device_id,
        "device_kind": alarm.device_kind,
        "community": alarm.community_code,
        "community_name": community_name,
        "rule": alarm.rule_id,
        "kind": alarm.kind,
        "severity": alarm.severity,
        "status": alarm.status,
        "level": alarm.level,
        "level_name": level_name(alarm.route, alarm.level),
        "count": alarm.count,
        "value": alarm.value,
        "floor": (alarm.detail or {}).get("floor"),
        "first_seen_at": alarm.first_seen_at.isoformat(),
        "last_seen_at": alarm.last_seen_at.isoformat(),
        "outcome": alarm.outcome,
        "lat": alarm.lat,
        "lon": alarm.lon,
        "jurisdiction": alarm.jurisdiction_code,
        "summary": f"{alarm.kind} · {where} · {alarm.device_id}",
    }


def alarm_event(
    name: str, alarm: DeviceAlarm, *, community_name: str | None = None,
    actor: str | None = None,
) -> Event:
    return Event(
        name=name,
        source="anwang.communities",
        payload=alarm_payload(alarm, community_name=community_name),
        audience=Audience(roles=audience_roles(alarm.route, alarm.level),
                          jurisdiction=alarm.jurisdiction_code),
        context=EventContext(actor=actor),
    )


def outage_event(
    *, community: str, community_name: str | None, jurisdiction: str | None,
    devices: list[str], count: int, lat: float, lon: float,
) -> Event:
    return Event(
        name=OUTAGE,
        source="anwang.communities",
        payload={
            "community": community,
            "community_name": community_name,
            "count": count,
            "devices": devices[:20],
            "lat": lat,
            "lon": lon,
            "jurisdiction": jurisdiction,
            "summary": f"{count} offline · {community_name or community}",
        },
        audience=Audience(roles=audience_roles("maintenance", 0), jurisdiction=jurisdiction),
    )
