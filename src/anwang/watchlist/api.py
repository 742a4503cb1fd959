"""The watch-list JSON API (mounted under ``/api/v1``).

Creating, renewing and importing need ``watchlist.edit``; approving needs
``watchlist.approve`` and someone other than the owner (or importer); reading needs
either. Expiry limits come from the setting ``watchlist_max_days``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from starlette.concurrency import run_in_threadpool

from anwang.auth.deps import CurrentPrincipal, DbSession, Principal, StateDep, require
from anwang.auth.permissions import Action
from anwang.core.errors import PermissionDenied, UnsupportedMediaType, ValidationFailed
from anwang.watchlist import service
from anwang.watchlist.models import WatchEntry, WatchlistBatch
from anwang.watchlist.schemas import (
    BatchOut,
    EntryCreate,
    EntryDetail,
    EntryOut,
    HistoryItem,
    Recipients,
    RejectedRow,
    Renew,
    Revoke,
)

router = APIRouter(tags=["watchlist"])

Editor = Annotated[Principal, Depends(require(Action.WATCHLIST_EDIT))]
Approver = Annotated[Principal, Depends(require(Action.WATCHLIST_APPROVE))]


def can_read(principal: Principal) -> bool:
    return principal.can(Action.WATCHLIST_EDIT) or principal.can(Action.WATCHLIST_APPROVE)


async def _reader(principal: CurrentPrincipal) -> Principal:
    if not can_read(principal):
        raise PermissionDenied(f"The role {principal.role} may not see the watch list.",
                               code="anwang.auth.permission_denied")
    return principal


Reader = Annotated[Principal, Depends(_reader)]


def entry_out(e: WatchEntry) -> EntryOut:
    return EntryOut(
        id=e.id, pattern=e.pattern, kind=service.PatternKind(e.kind),
        status=service.Status(e.status), reason=service.Reason(e.reason),
        legal_basis=e.legal_basis, case_ref=e.case_ref, priority=e.priority,
        expires_at=e.expires_at, vehicle=e.vehicle,
        recipients=Recipients.model_validate(
            {"roles": e.recipient_roles or [], "jurisdictions": e.recipient_jurisdictions or []}
        ),
        owner=e.owner, approved_by=e.approved_by, approved_at=e.approved_at,
        revoked_by=e.revoked_by, revoked_at=e.revoked_at, revoke_reason=e.revoke_reason,
        source=e.source, batch_id=e.batch_id, created_at=e.created_at, updated_at=e.updated_at,
    )


def batch_out(b: WatchlistBatch) -> BatchOut:
    return BatchOut(
        id=b.id, source=b.source, status=b.status, reason=service.Reason(b.reason),
        case_ref=b.case_ref, priority=b.priority, expires_at=b.expires_at,
        refresh=b.refresh, rows=len(b.rows), rejected=[RejectedRow(**r) for r in b.rejected],
        imported_by=b.imported_by, imported_at=b.imported_at, approved_by=b.approved_by,
        approved_at=b.approved_at, result=b.result,
    )


@router.post("/watchlist", response_model=EntryOut, status_code=status.HTTP_201_CREATED)
def create_entry(
    body: EntryCreate, principal: Editor, session: DbSession, state: StateDep
) -> EntryOut:
    """Propose an entry; it is ``pending`` until a second person approves it."""
    recipients = body.recipients or Recipients()
    entry = service.create_entry(
        session, pattern=body.pattern, reason=body.reason, legal_basis=body.legal_basis,
        case_ref=body.case_ref, priority=body.priority, expires_at=body.expires_at,
        vehicle=body.vehicle.model_dump(exclude_none=True) if body.vehicle else None,
        recipient_roles=[r.value for r in recipients.roles],
        recipient_jurisdictions=recipients.jurisdictions,
        actor=principal.name, actor_role=principal.role,
        max_days=state.settings.watchlist_max_days,
    )
    return entry_out(entry)


@router.get("/watchlist", response_model=list[EntryOut])
def list_entries(
    principal: Reader,
    session: DbSession,
    status_: Annotated[service.Status | None, Query(alias="status")] = None,
    reason: service.Reason | None = None,
    case_ref: Annotated[str | None, Query(max_length=100)] = None,
    owner: Annotated[str | None, Query(max_length=100)] = None,
    source: Annotated[str | None, Query(max_length=100)] = None,
    pattern: Annotated[str | None, Query(max_length=64, description="contains")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[EntryOut]:
    rows = service.list_entries(
        session, status=status_, reason=reason, case_ref=case_ref, owner=owner,
        source=source, pattern=pattern, limit=limit, offset=offset,
    )
    return [entry_out(e) for e in rows]


@router.get("/watchlist/{entry_id}", response_model=EntryDetail)
def get_entry(entry_id: str, principal: Reader, session: DbSession) -> EntryDetail:
    """The entry with its history from the audit trail, oldest first."""
    entry = service.get_entry(session, entry_id=entry_id)
    history = [HistoryItem.model_validate(h) for h in service.entry_history(session, entry=entry)]
    return EntryDetail(**entry_out(entry).model_dump(), history=history)


@router.post("/watchlist/{entry_id}/approve", response_model=EntryOut)
def approve_entry(entry_id: str, principal: Approver, session: DbSession) -> EntryOut:
    """Put a pending entry into force (403 ``anwang.watchlist.own_entry`` for its owner)."""
    return entry_out(service.approve_entry(
        session, entry_id=entry_id, actor=principal.name, actor_role=principal.role))


@router.post("/watchlist/{entry_id}/revoke", response_model=EntryOut)
def revoke_entry(
    entry_id: str, principal: Reader, session: DbSession, body: Revoke | None = None
) -> EntryOut:
    return entry_out(service.revoke_entry(
        session, entry_id=entry_id, actor=principal.name, actor_role=principal.role,
        reason=body.reason if body else None))


@router.post("/watchlist/{entry_id}/renew", response_model=EntryOut)
def renew_entry(
    entry_id: str, body: Renew, principal: Reader, session: DbSession, state: StateDep
) -> EntryOut:
    """A new expiry (at most ``watchlist_max_days`` ahead); an expired entry returns to
    ``pending`` and needs approval again."""
    return entry_out(service.renew_entry(
        session, entry_id=entry_id, expires_at=body.expires_at, actor=principal.name,
        actor_role=principal.role, max_days=state.settings.watchlist_max_days))


@router.post("/watchlist/imports", response_model=BatchOut, status_code=201,
             openapi_extra={"requestBody": {"content": {"text/csv": {
                 "schema": {"type": "string"}}}, "required": True}})
async def import_list(
    request: Request,
    principal: Editor,
    state: StateDep,
    source: Annotated[str, Query(min_length=1, max_length=100)],
    legal_basis: Annotated[str, Query(min_length=1, max_length=2000)],
    case_ref: Annotated[str, Query(min_length=1, max_length=100)],
    expires_at: datetime,
    reason: service.Reason = service.Reason.STOLEN_VEHICLE,
    priority: Annotated[int, Query(ge=1, le=3)] = 2,
    refresh: bool = False,
) -> BatchOut:
    """Upload an external list (``text/csv`` body, a ``plate`` column) as one pending
    batch; bad rows are listed in ``rejected`` with their line. With ``refresh``,
    approving the batch also revokes the source's entries that are not on it."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "text/csv":
        raise UnsupportedMediaType("Send the list as text/csv.",
                                   code="anwang.unsupported_media_type")
    body = await request.body()
    if expires_at.tzinfo is None:
        raise ValidationFailed.on("expires_at", "must carry a UTC offset")

    def work() -> BatchOut:
        parsed = service.parse_list(body, default_priority=priority)
        with state.db.unit_of_work(
            info={"scope": principal.scope, "principal": principal}
        ) as session:
            batch = service.import_list(
                session, source=source, parsed=parsed, reason=reason,
                legal_basis=legal_basis, case_ref=case_ref, expires_at=expires_at,
                priority=priority, refresh=refresh, actor=principal.name,
                actor_role=principal.role, max_days=state.settings.watchlist_max_days,
            )
            return batch_out(batch)

    return await run_in_threadpool(work)


@router.get("/watchlist/imports/{batch_id}", response_model=BatchOut)
def get_batch(batch_id: str, principal: Reader, session: DbSession) -> BatchOut:
    return batch_out(service.get_batch(session, batch_id=batch_id))


@router.post("/watchlist/imports/{batch_id}/approve", response_model=BatchOut)
def approve_batch(batch_id: str, principal: Approver, session: DbSession) -> BatchOut:
    """Put the whole list into force at once (403 ``anwang.watchlist.own_batch`` for the
    importer); ``result`` counts the entries created, renewed, unchanged and revoked."""
    return batch_out(service.approve_batch(
        session, batch_id=batch_id, actor=principal.name, actor_role=principal.role))
