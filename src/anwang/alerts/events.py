"""Names and payloads of the alert events.

Each event carries the alert as the live map and the alert page need it (see
:func:`payload`): a ``lat``/``lon`` (``static/js/map.js`` drops a marker), the plate,
checkpoint, direction, capture time, match kind, reason, vehicle description and the
``banner`` that the page translates. ``audience`` is the alert's recipients: the SSE
stream pushes the event to the users whose role and jurisdiction they include.
``static/js/alerts.js`` reads these payloads; keep the two in step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from anwang.core.events import Audience, Event, EventContext

if TYPE_CHECKING:
    from anwang.alerts.models import Alert

RAISED = "anwang.alerts.alert.raised"
UPDATED = "anwang.alerts.alert.updated"
ESCALATED = "anwang.alerts.alert.escalated"
ACKNOWLEDGED = "anwang.alerts.alert.acknowledged"
CLOSED = "anwang.alerts.alert.closed"

#: What every alert says first: a hit is a lead, not an identification.
BANNER = "unconfirmed — verify the plate and vehicle visually before acting"


def payload(alert: Alert, *, vehicle_description: str) -> dict[str, Any]:
    return {
        "alert_id": alert.id,
        "url": f"/alerts/{alert.id}",
        "status": alert.status,
        "plate": alert.plate,
        "pattern": alert.pattern,
        "checkpoint": alert.checkpoint_code,
        "checkpoint_name": alert.checkpoint_name,
        "checkpoint_kind": alert.checkpoint_kind,
        "direction": alert.direction,
        "lane": alert.lane,
        "captured_at": alert.last_seen_at.isoformat(),
        "first_seen_at": alert.first_seen_at.isoformat(),
        "count": alert.count,
        "match_kind": alert.match_kind,
        "priority": alert.priority,
        "reason": alert.reason,
        "vehicle": alert.vehicle,
        "vehicle_description": vehicle_description,
        "lat": alert.lat,
        "lon": alert.lon,
        "jurisdiction": alert.jurisdiction_code,
        "escalation_level": alert.escalation_level,
        "banner": BANNER,
        # The feed's one-line summary (feed.js shows "summary" first).
        "summary": f"{alert.plate} · {alert.checkpoint_name}",
    }


def alert_event(
    name: str, alert: Alert, *, vehicle_description: str, roles: tuple[str, ...],
    jurisdiction: str | None, actor: str | None = None,
) -> Event:
    return Event(
        name=name,
        payload=payload(alert, vehicle_description=vehicle_description),
        audience=Audience(roles=roles, jurisdiction=jurisdiction),
        context=EventContext(actor=actor),
    )
