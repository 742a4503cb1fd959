"""Request and response shapes of the alerts API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from anwang.alerts.events import BANNER
from anwang.alerts.service import Outcome, Status
from anwang.audit.schemas import HistoryItem


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CloseRequest(_In):
    outcome: Outcome
    note: str | None = Field(default=None, max_length=2000)


class AlertOut(BaseModel):
    id: str
    status: Status
    outcome: Outcome | None
    note: str | None
    #: Always the same warning: a hit is a lead, not an identification.
    banner: str = BANNER
    entry_id: str
    reason: str
    case_ref: str | None
    match_kind: str
    priority: int
    pattern: str
    plate: str
    plate_color: str | None
    confidence: float | None
    vehicle: dict[str, Any] | None
    vehicle_description: str
    read_vehicle: dict[str, Any] | None
    image_ref: str | None
    read_id: str
    last_read_id: str
    checkpoint: str
    checkpoint_name: str
    checkpoint_kind: str | None
    direction: str | None
    lane: int | None
    lat: float
    lon: float
    jurisdiction: str | None
    count: int
    first_seen_at: datetime
    last_seen_at: datetime
    raised_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    closed_at: datetime | None
    closed_by: str | None
    escalation_level: int
    escalated_at: datetime | None


class AlertDetail(AlertOut):
    history: list[HistoryItem]
