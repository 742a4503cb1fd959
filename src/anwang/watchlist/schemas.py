"""Request and response shapes of the watch-list API."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from anwang.audit.schemas import HistoryItem
from anwang.auth.permissions import Role
from anwang.watchlist.service import PatternKind, Reason, Status


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VehicleDescription(_In):
    """What to look for besides the plate; every field optional."""

    type: str | None = Field(default=None, max_length=100, examples=["sedan"])
    colour: str | None = Field(default=None, max_length=100, examples=["white"])
    make: str | None = Field(default=None, max_length=100, examples=["Toyota"])
    model: str | None = Field(default=None, max_length=100, examples=["Camry"])
    notes: str | None = Field(default=None, max_length=500)


class Recipients(_In):
    """Who is alerted on a hit. Empty: dispatchers, officers and commanders of the
    checkpoint's police station (and, as ever, of the district and city above it)."""

    roles: list[Role] = Field(default_factory=list, max_length=10)
    jurisdictions: list[str] = Field(default_factory=list, max_length=50)


class EntryCreate(_In):
    pattern: str = Field(
        min_length=1, max_length=64,
        description="A plate (exact), or a partial plate: '?' one character, '*' any run.",
        examples=["苏D12345", "苏D?23*"],
    )
    reason: Reason
    legal_basis: str = Field(min_length=1, max_length=2000)
    case_ref: str = Field(min_length=1, max_length=100)
    priority: int = Field(ge=1, le=3, description="1 is the highest.")
    expires_at: AwareDatetime = Field(description="At most watchlist_max_days (90) ahead.")
    vehicle: VehicleDescription | None = None
    recipients: Recipients | None = None


class Revoke(_In):
    reason: str | None = Field(default=None, max_length=2000)


class Renew(_In):
    expires_at: AwareDatetime


class EntryOut(BaseModel):
    id: str
    pattern: str
    kind: PatternKind
    status: Status
    reason: Reason
    legal_basis: str
    case_ref: str
    priority: int
    expires_at: datetime
    vehicle: dict[str, str] | None
    recipients: Recipients
    owner: str
    approved_by: str | None
    approved_at: datetime | None
    revoked_by: str | None
    revoked_at: datetime | None
    revoke_reason: str | None
    source: str | None
    batch_id: str | None
    created_at: datetime
    updated_at: datetime


class EntryDetail(EntryOut):
    history: list[HistoryItem]


class RejectedRow(BaseModel):
    line: int
    code: str
    detail: str


class BatchOut(BaseModel):
    id: str
    source: str
    status: str
    reason: Reason
    case_ref: str
    priority: int
    expires_at: datetime
    refresh: bool
    rows: int
    rejected: list[RejectedRow]
    imported_by: str
    imported_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    result: dict[str, int] | None
