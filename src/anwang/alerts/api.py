"""The alerts JSON API (mounted under ``/api/v1``).

Listing and handling need ``alerts.handle``; every query is limited to the caller's
jurisdiction (``Alert`` is jurisdiction-scoped), so an alert elsewhere is a 404. The
statistics also serve those who edit the watch list.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from anwang.alerts import service
from anwang.alerts.models import Alert
from anwang.alerts.schemas import AlertDetail, AlertOut, CloseRequest, HistoryItem
from anwang.auth.deps import CurrentPrincipal, DbSession, Principal, require
from anwang.auth.permissions import Action
from anwang.core.errors import PermissionDenied, ValidationFailed
from anwang.core.events import utcnow

router = APIRouter(tags=["alerts"])

Handler = Annotated[Principal, Depends(require(Action.ALERTS_HANDLE))]


def can_see_statistics(principal: Principal) -> bool:
    return principal.can(Action.ALERTS_HANDLE) or principal.can(Action.WATCHLIST_EDIT)


async def _stats_reader(principal: CurrentPrincipal) -> Principal:
    if not can_see_statistics(principal):
        raise PermissionDenied(f"The role {principal.role} may not see alert statistics.",
                               code="anwang.auth.permission_denied")
    return principal


StatsReader = Annotated[Principal, Depends(_stats_reader)]


def alert_out(a: Alert) -> AlertOut:
    return AlertOut(
        id=a.id, status=service.Status(a.status),
        outcome=service.Outcome(a.outcome) if a.outcome else None, note=a.note,
        entry_id=a.entry_id, reason=a.reason, case_ref=a.case_ref, match_kind=a.match_kind,
        priority=a.priority, pattern=a.pattern, plate=a.plate, plate_color=a.plate_color,
        confidence=a.confidence, vehicle=a.vehicle,
        vehicle_description=service.vehicle_description(a), read_vehicle=a.read_vehicle,
        image_ref=a.image_ref, read_id=a.read_id, last_read_id=a.last_read_id,
        checkpoint=a.checkpoint_code, checkpoint_name=a.checkpoint_name,
        checkpoint_kind=a.checkpoint_kind, direction=a.direction, lane=a.lane, lat=a.lat,
        lon=a.lon, jurisdiction=a.jurisdiction_code, count=a.count,
        first_seen_at=a.first_seen_at, last_seen_at=a.last_seen_at, raised_at=a.raised_at,
        acknowledged_at=a.acknowledged_at, acknowledged_by=a.acknowledged_by,
        closed_at=a.closed_at, closed_by=a.closed_by, escalation_level=a.escalation_level,
        escalated_at=a.escalated_at,
    )


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValidationFailed.on(name, "must carry a UTC offset")
    return value


@router.get("/alerts", response_model=list[AlertOut])
def list_alerts(
    principal: Handler,
    session: DbSession,
    status: service.Status | None = None,
    checkpoint: Annotated[str | None, Query(max_length=40)] = None,
    since: datetime | None = None,
    reason: Annotated[str | None, Query(max_length=30)] = None,
    kind: Annotated[str | None, Query(pattern="^(exact|approximate|partial)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[AlertOut]:
    """Alerts in your jurisdiction, newest first; ``since`` filters on the last hit."""
    rows = service.list_alerts(
        session, status=status, checkpoint=checkpoint, since=_aware("since", since),
        reason=reason, kind=kind, limit=limit, offset=offset,
    )
    return [alert_out(a) for a in rows]


@router.get("/alerts/stats")
def alert_statistics(
    principal: StatsReader,
    session: DbSession,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> dict[str, Any]:
    """Hits by reason, alerts by kind and status, outcomes and misread rate per
    checkpoint, time to acknowledge — over the last ``days``, in your jurisdiction."""
    return service.statistics(session, since=utcnow() - timedelta(days=days))


@router.get("/alerts/{alert_id}", response_model=AlertDetail)
def get_alert(alert_id: str, principal: Handler, session: DbSession) -> AlertDetail:
    alert = service.get_alert(session, alert_id=alert_id)
    history = [HistoryItem.model_validate(h) for h in service.alert_history(session, alert=alert)]
    return AlertDetail(**alert_out(alert).model_dump(), history=history)


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertOut)
def acknowledge(alert_id: str, principal: Handler, session: DbSession) -> AlertOut:
    """``open`` → ``acknowledged`` (409 ``anwang.alerts.invalid_transition`` otherwise)."""
    return alert_out(service.acknowledge_alert(
        session, alert_id=alert_id, actor=principal.name, actor_role=principal.role))


@router.post("/alerts/{alert_id}/close", response_model=AlertOut)
def close(
    alert_id: str, body: CloseRequest, principal: Handler, session: DbSession
) -> AlertOut:
    """``acknowledged`` → ``closed`` with an outcome (409 from any other state)."""
    return alert_out(service.close_alert(
        session, alert_id=alert_id, outcome=body.outcome, note=body.note,
        actor=principal.name, actor_role=principal.role))
