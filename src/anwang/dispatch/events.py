"""Names and payloads of the events dispatch publishes (after commit, via the outbox).

Every event goes to the roles that work with dispatch (:data:`DISPATCH_ROLES`) in the
jurisdiction of the thing it is about, so a district's dispatcher sees their incidents
and units only. Payloads carry ids and small facts. Incident events carry ``lat``/
``lon`` (the dashboard drops a marker there); unit positions travel as ``position``
``[lat, lon]`` instead, so moving units do not pepper the dashboard with markers — the
dispatch console (``static/js/dispatch.js``) draws them.
"""

from __future__ import annotations

from typing import Any, Final

from anwang.core.events import Audience, Event, EventContext

INCIDENT_CREATED: Final = "anwang.dispatch.incident.created"
INCIDENT_UPDATED: Final = "anwang.dispatch.incident.updated"
UNIT_CREATED: Final = "anwang.dispatch.unit.created"
UNIT_ASSIGNED: Final = "anwang.dispatch.unit.assigned"
UNIT_STATUS_CHANGED: Final = "anwang.dispatch.unit.status_changed"
UNIT_MOVED: Final = "anwang.dispatch.unit.moved"
INSTRUCTION_SENT: Final = "anwang.dispatch.instruction.sent"
INSTRUCTION_ACKNOWLEDGED: Final = "anwang.dispatch.instruction.acknowledged"
INSTRUCTION_ESCALATED: Final = "anwang.dispatch.instruction.escalated"
POST_CHANGED: Final = "anwang.dispatch.post.changed"

ALL: Final = (
    INCIDENT_CREATED, INCIDENT_UPDATED, UNIT_CREATED, UNIT_ASSIGNED, UNIT_STATUS_CHANGED,
    UNIT_MOVED, INSTRUCTION_SENT, INSTRUCTION_ACKNOWLEDGED, INSTRUCTION_ESCALATED,
    POST_CHANGED,
)

DISPATCH_ROLES: Final = ("dispatcher", "commander", "officer")
#: Who hears of an escalated instruction (the sender's colleagues and their commanders).
ESCALATION_ROLES: Final = ("dispatcher", "commander")


def make(
    name: str,
    payload: dict[str, Any],
    *,
    jurisdiction: str | None,
    actor: str | None = None,
    roles: tuple[str, ...] = DISPATCH_ROLES,
) -> Event:
    return Event(
        name=name,
        source="anwang.dispatch",
        context=EventContext(actor=actor),
        audience=Audience(roles=roles, jurisdiction=jurisdiction),
        payload=payload,
    )
