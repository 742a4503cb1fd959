"""``GET /api/v1/audit``: the auditor's read of the trail, filtered and paged."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from anwang.audit import service
from anwang.audit.schemas import AuditEntryOut, AuditPage, VerifyOut
from anwang.auth.deps import DbSession, Principal, require
from anwang.auth.permissions import Action
from anwang.core import audit

router = APIRouter(tags=["audit"])

Auditor = Annotated[Principal, Depends(require(Action.AUDIT_READ))]


@router.get("/audit", response_model=AuditPage)
def list_audit(
    principal: Auditor,
    session: DbSession,
    actor: str | None = None,
    action: Annotated[str | None, Query(description="Dotted prefix, e.g. anwang.auth")] = None,
    subject: str | None = None,
    case_ref: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_seq: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    rows = service.list_entries(
        session, actor=actor, action=action, subject=subject, case_ref=case_ref,
        since=since, until=until, before_seq=before_seq, limit=limit,
    )
    items = [AuditEntryOut.model_validate(r) for r in rows]
    # Reading the trail is itself recorded: the watchers are watched too.
    filters = {"actor": actor, "action": action, "subject": subject, "case_ref": case_ref,
               "since": since.isoformat() if since else None,
               "until": until.isoformat() if until else None, "before_seq": before_seq}
    audit.record(
        session, "anwang.audit.trail.read", actor=principal.name, actor_role=principal.role,
        result_count=len(items), data={k: v for k, v in filters.items() if v is not None},
    )
    nxt = items[-1].seq if len(items) == limit and items[-1].seq > 1 else None
    return AuditPage(items=items, next_before_seq=nxt)


@router.get("/audit/verify", response_model=VerifyOut)
def verify_audit(principal: Auditor, session: DbSession) -> VerifyOut:
    r = audit.verify(session)
    return VerifyOut(
        ok=r.ok, checked=r.checked, head_seq=r.head_seq, head_hash=r.head_hash,
        bad_seq=r.bad_seq, problem=r.problem,
    )
