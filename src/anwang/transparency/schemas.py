"""The shape of the transparency report (``GET /api/v1/transparency``).

Every figure is a count, a setting or a hash. Nothing here names a person, a plate, a
case or a place smaller than the city: the only keys of the ``by_*`` maps are closed
vocabularies (checkpoint kinds, watch-list reasons, the configured search reasons,
alert statuses and outcomes). How each figure is computed is in ``docs/privacy.md``.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class Period(BaseModel):
    """The report covers ``from`` (inclusive) up to ``to``: the ``days`` before the
    moment it was computed, in UTC."""

    model_config = ConfigDict(populate_by_name=True)

    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    days: int


class KindCount(BaseModel):
    total: int
    active: int


class CheckpointFigures(BaseModel):
    """The checkpoint registry now (not only the period): every registered checkpoint,
    and those active (deactivated ones send nothing that is stored)."""

    total: int
    active: int
    by_kind: dict[str, KindCount]


class ReadFigures(BaseModel):
    #: Reads captured in the period and still stored now (``with_hit`` +
    #: ``without_hit``). Reads without a hit older than the retention window are gone.
    stored: int
    stored_with_hit: int
    stored_without_hit: int
    #: Reads deleted by the retention purge during the period, summed from its audit rows.
    purged: int
    #: Purge rounds that deleted something (a round that finds nothing is not audited).
    purge_runs: int


class Retention(BaseModel):
    #: Hours a read that matched no watch-list entry is kept.
    read_retention_hours: int
    #: Days a read with a watch-list hit is kept after the last of its alerts was closed
    #: (a hit that raised no alert: after capture); None where the installation has no
    #: such setting.
    alert_retention_days: int | None


class CountByReason(BaseModel):
    total: int
    by_reason: dict[str, int]


class WatchlistFigures(BaseModel):
    #: Entries active when the report was computed (approved, not revoked, not expired).
    active: CountByReason
    #: Changes during the period, from the audit trail.
    created: CountByReason
    approved: CountByReason
    revoked: CountByReason
    expired: CountByReason


class AlertFigures(BaseModel):
    """Alerts raised during the period. One alert counts every hit of the same entry at
    the same checkpoint within the dedupe window, so ``hits`` ≥ ``raised``."""

    raised: int
    hits: int
    hits_by_reason: dict[str, int]
    #: Where those alerts stand now: open, acknowledged, closed.
    by_status: dict[str, int]
    #: The closed ones, by what was found: confirmed, misread, not located, duplicate.
    by_outcome: dict[str, int]


class ReadAccess(BaseModel):
    """Searches (or exports) of stored reads during the period, from the audit trail:
    each accepted one is exactly one audit row, with its reason."""

    total: int
    by_reason: dict[str, int]
    #: Reads handed out by them, all together.
    reads_returned: int


class AccessFigures(BaseModel):
    searches: ReadAccess
    exports: ReadAccess


class AuditChain(BaseModel):
    """The head of the hash-chained audit trail. Two reports with the same ``head_seq``
    must show the same ``head_hash``; a later report's chain must contain the earlier
    head (``anwang audit verify`` and signed checkpoints prove it)."""

    head_seq: int
    head_hash: str
    #: True: every entry up to the head was re-hashed and chains to it; False: the chain
    #: is broken (``bad_seq`` says where); None: the check has not reached the head yet.
    verified: bool | None
    verified_through_seq: int
    bad_seq: int | None = None


class TransparencyReport(BaseModel):
    generated_at: datetime
    period: Period
    checkpoints: CheckpointFigures
    reads: ReadFigures
    retention: Retention
    watchlist: WatchlistFigures
    alerts: AlertFigures
    access: AccessFigures
    audit: AuditChain
