"""API shapes of the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: datetime
    actor: str | None
    actor_role: str | None
    action: str
    subject: str | None
    reason: str | None
    case_ref: str | None
    result_count: int | None
    jurisdiction: str | None
    data: dict[str, Any] | None
    prev_hash: str
    hash: str


class HistoryItem(BaseModel):
    """One audit entry in the history of a record (an alert, a watch-list entry)."""

    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: datetime
    action: str
    actor: str | None
    actor_role: str | None
    reason: str | None
    data: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    #: Pass as ``before_seq`` to get the next (older) page; None when there is none.
    next_before_seq: int | None


class VerifyOut(BaseModel):
    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    bad_seq: int | None
    problem: str | None
