"""Computing the transparency report from the data and the audit trail.

Figures about what exists now (checkpoints, active watch-list entries, stored reads,
alerts) come from the owning packages' services; figures about what people did (searches,
exports, watch-list changes, purges) come from the audit trail alone, counted by action
and reason, so that they cannot differ from what the auditor sees. Nothing is stored and
nothing is typed in: asking twice at the same moment gives the same report.

Like every service here, the functions are keyword-only, take the caller's session and
never commit. The session must be city-wide (``Scope(None)``): the report is about the
whole installation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from anwang.alerts import service as alerts_service
from anwang.checkpoints import service as checkpoints_service
from anwang.core import audit
from anwang.core.audit import AuditEntry, AuditHead, ChainVerifier
from anwang.core.errors import ValidationFailed
from anwang.settings import Settings
from anwang.transparency.schemas import (
    AccessFigures,
    AlertFigures,
    AuditChain,
    CheckpointFigures,
    CountByReason,
    KindCount,
    Period,
    ReadAccess,
    ReadFigures,
    Retention,
    TransparencyReport,
    WatchlistFigures,
)
from anwang.watchlist import service as watchlist_service

#: The longest period a report covers (a leap year).
MAX_DAYS = 366
DEFAULT_DAYS = 30

SEARCHED = "anwang.checkpoints.reads.searched"
EXPORTED = "anwang.checkpoints.reads.exported"
PURGED = "anwang.checkpoints.reads.purged"
#: Watch-list entry changes counted by the report, by the field of the report.
WATCHLIST_ACTIONS: dict[str, str] = {
    "created": "anwang.watchlist.entry.created",
    "approved": "anwang.watchlist.entry.approved",
    "revoked": "anwang.watchlist.entry.revoked",
    "expired": "anwang.watchlist.entry.expired",
}
#: Audit entries re-hashed per report at most (a few seconds of work); a longer trail is
#: verified over several reports, and ``verified`` stays None until the head is reached.
VERIFY_BUDGET = 200_000
_VERIFY_PAGE = 5000


def report_period(now: datetime, days: int = DEFAULT_DAYS) -> tuple[datetime, datetime]:
    """``(from, to)`` of a report computed at ``now``: ``to`` is ``now`` in UTC, ``from``
    exactly ``days`` × 24 hours before it. UTC has no daylight-saving jumps, so every day
    of the period is 24 hours long. (``to`` keeps its microseconds: rounded down to the
    second, it would leave out what happened in the last fraction of a second before
    the report was asked for.)

    ``days`` must be 1..366 (``ValidationFailed`` on ``days``); ``now`` must carry its
    offset (``ValueError``: a naive time is a bug in the caller, not bad input).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        raise ValidationFailed.on("days", f"1..{MAX_DAYS}")
    end = now.astimezone(UTC)
    return end - timedelta(days=days), end


# --- the audit chain ----------------------------------------------------------------


@dataclass
class ChainWatch:
    """How far the audit chain has been re-verified, kept between reports by whoever
    computes them (the API keeps one per process), so that each report only hashes the
    entries appended since the last one.

    What it proves: every entry up to ``verified_through_seq`` chained correctly when it
    was read, and the head row matches the last of them. An entry rewritten *after* it
    was checked is caught by ``anwang audit verify`` (and, on PostgreSQL, refused by a
    trigger), not here; a trail that became shorter than what was already checked is
    reported as broken.
    """

    verifier: ChainVerifier = field(default_factory=ChainVerifier)
    budget: int = VERIFY_BUDGET
    #: Set when the head fell behind entries already verified (truncation or a restore).
    shortened_at: int | None = None

    @property
    def checked_through(self) -> int:
        return self.verifier.expected_seq - 1


def check_chain(session: Session, *, watch: ChainWatch) -> AuditChain:
    """The chain's head, and whether the entries up to it verify (advancing ``watch``
    by at most ``watch.budget`` entries)."""
    head = session.get(AuditHead, 1)
    if head is None:
        # No head row: either nothing was ever audited, or it was removed.
        exists = session.scalar(select(AuditEntry.seq).limit(1)) is not None
        return AuditChain(head_seq=0, head_hash=audit.GENESIS, verified=not exists,
                          verified_through_seq=0, bad_seq=1 if exists else None)
    head_seq, head_hash = int(head.seq), str(head.hash)
    v = watch.verifier
    if watch.checked_through > head_seq and watch.shortened_at is None:
        watch.shortened_at = head_seq + 1
    if watch.shortened_at is not None:
        return AuditChain(head_seq=head_seq, head_hash=head_hash, verified=False,
                          verified_through_seq=watch.checked_through,
                          bad_seq=watch.shortened_at)
    table = AuditEntry.__table__
    remaining = watch.budget
    ended = False  # the trail stops before the entry its head names
    while v.failure is None and watch.checked_through < head_seq and remaining > 0:
        page = session.execute(
            select(*table.c)
            .where(table.c.seq > watch.checked_through, table.c.seq <= head_seq)
            .order_by(table.c.seq).limit(min(_VERIFY_PAGE, remaining))
        ).all()
        if not page:
            ended = True
            break
        for row in page:
            if not v.feed(row):
                break
        remaining -= len(page)
    if v.failure is not None:
        return AuditChain(head_seq=head_seq, head_hash=head_hash, verified=False,
                          verified_through_seq=max(0, watch.checked_through),
                          bad_seq=v.failure.bad_seq)
    if watch.checked_through < head_seq and not ended:
        return AuditChain(head_seq=head_seq, head_hash=head_hash, verified=None,
                          verified_through_seq=watch.checked_through)
    result = v.finish((head_seq, head_hash))
    return AuditChain(head_seq=head_seq, head_hash=head_hash, verified=result.ok,
                      verified_through_seq=watch.checked_through, bad_seq=result.bad_seq)


# --- counting the audit trail -------------------------------------------------------


def _in_period(start: datetime, end: datetime) -> Any:
    return (AuditEntry.at >= start) & (AuditEntry.at < end)


def _by_reason(pairs: Iterable[tuple[str | None, int]]) -> CountByReason:
    counts: Counter[str] = Counter()
    for reason, n in pairs:
        counts[reason or "unspecified"] += int(n)
    return CountByReason(total=sum(counts.values()), by_reason=dict(sorted(counts.items())))


def count_read_access(session: Session, *, start: datetime, end: datetime) -> AccessFigures:
    """Searches and exports of stored reads in ``[start, end)``, by reason: one audit row
    each (:func:`anwang.checkpoints.search.search_reads`), whose ``reason`` is one of the
    configured search reasons (a search without one is refused and not recorded)."""
    rows = session.execute(
        select(AuditEntry.action, AuditEntry.reason, func.count(),
               func.coalesce(func.sum(AuditEntry.result_count), 0))
        .where(AuditEntry.action.in_((SEARCHED, EXPORTED)), _in_period(start, end))
        .group_by(AuditEntry.action, AuditEntry.reason)
    ).all()
    out: dict[str, ReadAccess] = {}
    for action in (SEARCHED, EXPORTED):
        mine = [(reason, int(n), int(returned)) for a, reason, n, returned in rows
                if a == action]
        counted = _by_reason((reason, n) for reason, n, _ in mine)
        out[action] = ReadAccess(total=counted.total, by_reason=counted.by_reason,
                                 reads_returned=sum(r for _, _, r in mine))
    return AccessFigures(searches=out[SEARCHED], exports=out[EXPORTED])


def count_purged(session: Session, *, start: datetime, end: datetime) -> tuple[int, int]:
    """(reads deleted, purge rounds) by the retention purge in ``[start, end)``, from its
    ``anwang.checkpoints.reads.purged`` audit rows."""
    runs, deleted = session.execute(
        select(func.count(), func.coalesce(func.sum(AuditEntry.result_count), 0))
        .where(AuditEntry.action == PURGED, _in_period(start, end),
               AuditEntry.result_count > 0)
    ).one()
    return int(deleted), int(runs)


def count_watchlist_changes(
    session: Session, *, start: datetime, end: datetime
) -> dict[str, CountByReason]:
    """Watch-list entries created, approved, revoked and expired in ``[start, end)``, by
    the entry's reason (which its audit rows carry in ``data.reason``)."""
    reason = AuditEntry.data["reason"].as_string()
    rows = session.execute(
        select(AuditEntry.action, reason, func.count())
        .where(AuditEntry.action.in_(WATCHLIST_ACTIONS.values()), _in_period(start, end))
        .group_by(AuditEntry.action, reason)
    ).all()
    return {
        key: _by_reason((r, n) for a, r, n in rows if a == action)
        for key, action in WATCHLIST_ACTIONS.items()
    }


# --- the report ---------------------------------------------------------------------


def _checkpoints(session: Session) -> CheckpointFigures:
    by_kind: dict[str, KindCount] = {}
    for cp in checkpoints_service.list_checkpoints(session):
        k = by_kind.setdefault(cp.kind, KindCount(total=0, active=0))
        k.total += 1
        k.active += int(bool(cp.active))
    return CheckpointFigures(
        total=sum(k.total for k in by_kind.values()),
        active=sum(k.active for k in by_kind.values()),
        by_kind=dict(sorted(by_kind.items())),
    )


def _alerts(session: Session, *, start: datetime) -> AlertFigures:
    stats = alerts_service.statistics(session, since=start)
    return AlertFigures(
        raised=int(stats["alerts"]),
        hits=int(stats["hits"]),
        hits_by_reason=dict(sorted(stats["hits_by_reason"].items())),
        by_status=dict(sorted(stats["alerts_by_status"].items())),
        by_outcome=dict(stats["outcomes"]),
    )


def build_report(
    session: Session,
    *,
    settings: Settings,
    now: datetime,
    days: int = DEFAULT_DAYS,
    chain: ChainWatch | None = None,
) -> TransparencyReport:
    """The report of the ``days`` up to ``now`` (see :func:`report_period`).

    Figures of the data (stored reads, alerts) count from the period's start up to the
    present, which is ``to`` whenever ``now`` is the present; figures of the audit trail
    count ``[from, to)``. ``chain`` carries the audit chain's verification between
    reports; without it the chain is checked from its first entry (up to
    :data:`VERIFY_BUDGET` entries).
    """
    start, end = report_period(now, days)
    stored = checkpoints_service.read_counts(session, since=start)
    purged, purge_runs = count_purged(session, start=start, end=end)
    active = watchlist_service.count_active_by_reason(session, at=end)
    changes = count_watchlist_changes(session, start=start, end=end)
    alert_days = getattr(settings, "alert_retention_days", None)
    return TransparencyReport(
        generated_at=end,
        period=Period(start=start, end=end, days=days),
        checkpoints=_checkpoints(session),
        reads=ReadFigures(
            stored=stored["hit"] + stored["no_hit"], stored_with_hit=stored["hit"],
            stored_without_hit=stored["no_hit"], purged=purged, purge_runs=purge_runs,
        ),
        retention=Retention(
            read_retention_hours=settings.read_retention_hours,
            alert_retention_days=int(alert_days) if alert_days is not None else None,
        ),
        watchlist=WatchlistFigures(
            active=_by_reason(active.items()), **changes,
        ),
        alerts=_alerts(session, start=start),
        access=count_read_access(session, start=start, end=end),
        audit=check_chain(session, watch=chain or ChainWatch()),
    )
