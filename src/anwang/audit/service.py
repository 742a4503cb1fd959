"""Reading the audit trail. Writing happens only through :func:`anwang.core.audit.record`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from anwang.core.audit import AuditEntry


def list_entries(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    subject: str | None = None,
    case_ref: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_seq: int | None = None,
    limit: int = 100,
) -> Sequence[AuditEntry]:
    """Newest first. ``action`` matches a dotted prefix (``anwang.auth`` finds every
    ``anwang.auth.*``); ``before_seq`` pages backwards (keyset pagination)."""
    stmt = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(max(1, min(limit, 1000)))
    if actor:
        stmt = stmt.where(AuditEntry.actor == actor)
    if action:
        stmt = stmt.where(
            (AuditEntry.action == action) | AuditEntry.action.startswith(action + ".")
        )
    if subject:
        stmt = stmt.where(AuditEntry.subject == subject)
    if case_ref:
        stmt = stmt.where(AuditEntry.case_ref == case_ref)
    if since:
        stmt = stmt.where(AuditEntry.at >= since)
    if until:
        stmt = stmt.where(AuditEntry.at < until)
    if before_seq:
        stmt = stmt.where(AuditEntry.seq < before_seq)
    return session.scalars(stmt).all()
