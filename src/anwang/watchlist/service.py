"""Watch-list use cases: entries, their approval and expiry, list imports, and matching.

Rules
-----
* An entry needs a pattern, a reason, a legal basis, a case reference and an expiry at
  most ``max_days`` (setting ``watchlist_max_days``, 90) ahead. Its creator owns it.
* It starts ``pending`` and becomes ``active`` only when someone else approves it (the
  route demands ``watchlist.approve``; the owner never approves their own). Only
  ``active`` entries before their ``expires_at`` match; ``pending``, ``revoked`` and
  ``expired`` ones never do.
* Every change is audited in its transaction (subject ``watchlist_entry:<id>``) and
  raises the ``watchlist_version`` counter.
* An external list (CSV) is imported as one batch and approved as one act by a second
  person; with ``refresh`` the entries of that source no longer on the list are revoked.

Matching
--------
:func:`match_reads` matches reads against an in-memory :class:`~.matcher.WatchIndex` of
the active entries, one per database per process. Every change of an entry raises the
one-row ``watchlist_version`` counter in the changing transaction and stamps the entry
with the new value; a process compares its index's version with the counter at most
once a second (:data:`CHECK_INTERVAL`) and then loads only the entries stamped later.
So several API and worker processes converge within a second, and the process that made
a change sees it at once (its commit marks the index stale).
"""

from __future__ import annotations

import csv
import gc
import io
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from anwang.audit import service as audit_service
from anwang.auth import service as auth_service
from anwang.auth.permissions import Action, Role, allowed
from anwang.checkpoints import plates
from anwang.core import audit
from anwang.core.audit import AuditEntry
from anwang.core.db import after_commit, publish_after_commit
from anwang.core.errors import (
    Conflict,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from anwang.core.events import new_id, utcnow
from anwang.watchlist import events
from anwang.watchlist.matcher import (
    DEFAULT_CONFUSABLES,
    Entry,
    Hit,
    WatchIndex,
    validate_pattern,
)
from anwang.watchlist.models import WatchEntry, WatchlistBatch, WatchlistVersion

log = logging.getLogger(__name__)


class Reason(StrEnum):
    STOLEN_VEHICLE = "stolen_vehicle"
    STOLEN_PLATE = "stolen_plate"
    WANTED_CASE = "wanted_case"
    MISSING_PERSON = "missing_person"
    HIT_AND_RUN = "hit_and_run"
    OTHER = "other"


class Status(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


class PatternKind(StrEnum):
    EXACT = "exact"
    PARTIAL = "partial"


#: Statuses an entry can still change from.
LIVE = (Status.PENDING, Status.ACTIVE)
DEFAULT_MAX_DAYS = 90
#: Fields of a vehicle description, each a short text.
VEHICLE_FIELDS = ("type", "colour", "make", "model", "notes")
#: Seconds between two looks at the version counter by one process's index.
CHECK_INTERVAL = 1.0
#: From this many entries on, a full build of the index freezes the process's objects
#: out of the garbage collector's reach (``gc.freeze``; see :func:`_build`).
FREEZE_AT = 100_000
#: Rows of one imported list at most.
MAX_IMPORT_ROWS = 200_000
SUBJECT = "watchlist_entry:"
BATCH_SUBJECT = "watchlist_batch:"


def subject_of(entry_id: str) -> str:
    return SUBJECT + entry_id


# --- patterns -------------------------------------------------------------------------

_WILDCARDS = frozenset("?*？＊")
_SERIAL_MAP = str.maketrans({"I": "1", "O": "0"})


def _map_serial(pattern: str) -> str:
    """Read ``I`` as ``1`` and ``O`` as ``0`` in a partial pattern's serial, as the plate
    rules do for reads (``plates.normalise``), so the pattern can match a read at all.

    Only where the position is known: the pattern starts with a province character or
    ``?`` (position 1 is the issuer, left alone), and only before the first ``*``.
    """
    if not pattern or not (pattern[0] == "?" or not pattern[0].isascii()):
        return pattern
    star = pattern.find("*")
    end = len(pattern) if star < 0 else star
    return pattern[:2] + pattern[2:end].translate(_SERIAL_MAP) + pattern[end:]


def normalise_pattern(
    pattern: str, *, rules: plates.PlateRules = plates.MAINLAND_CN
) -> tuple[str, PatternKind]:
    """The stored form and kind of a pattern; :class:`ValidationFailed` on ``pattern``.

    A pattern with ``?`` (one character) or ``*`` (any run) is partial and must pass
    :func:`~.matcher.validate_pattern`; anything else must be a valid plate under
    ``rules`` and is stored normalised, as reads are.
    """
    if not isinstance(pattern, str) or not pattern.strip():
        raise ValidationFailed.on("pattern", "required", code="anwang.watchlist.invalid_pattern")
    if any(c in _WILDCARDS for c in pattern):
        try:
            partial = validate_pattern(pattern)
        except ValueError as exc:
            raise ValidationFailed.on(
                "pattern", str(exc), code="anwang.watchlist.invalid_pattern"
            ) from None
        return _map_serial(partial), PatternKind.PARTIAL
    try:
        plate = plates.parse(pattern, rules)
    except plates.InvalidPlate as exc:
        raise ValidationFailed.on(
            "pattern", f"not a valid plate ({exc.reason})",
            code="anwang.watchlist.invalid_pattern",
        ) from None
    return plate.text, PatternKind.EXACT


# --- small checks ---------------------------------------------------------------------


def _required_text(name: str, value: str | None, max_len: int) -> str:
    value = (value or "").strip()
    if not value:
        raise ValidationFailed.on(name, "required")
    if len(value) > max_len:
        raise ValidationFailed.on(name, f"at most {max_len} characters")
    return value


def _check_expiry(expires_at: datetime | None, *, now: datetime, max_days: int) -> datetime:
    if expires_at is None:
        raise ValidationFailed.on("expires_at", "required")
    if expires_at.tzinfo is None or expires_at.utcoffset() is None:
        raise ValidationFailed.on("expires_at", "must carry a UTC offset")
    if expires_at <= now:
        raise ValidationFailed.on("expires_at", "must be in the future")
    if expires_at > now + timedelta(days=max_days):
        raise ValidationFailed.on(
            "expires_at", f"at most {max_days} days ahead; renew the entry to extend it",
            code="anwang.watchlist.expiry_too_far",
        )
    return expires_at


def _check_reason(reason: str) -> Reason:
    try:
        return Reason(reason)
    except ValueError:
        raise ValidationFailed.on(
            "reason", f"one of {', '.join(r.value for r in Reason)}"
        ) from None


def _check_priority(priority: int, name: str = "priority") -> int:
    if type(priority) is not int or not 1 <= priority <= 3:
        raise ValidationFailed.on(name, "1 (highest), 2 or 3")
    return priority


def _clean_vehicle(vehicle: Mapping[str, Any] | None) -> dict[str, str] | None:
    if not vehicle:
        return None
    out: dict[str, str] = {}
    for key, value in vehicle.items():
        if key not in VEHICLE_FIELDS:
            raise ValidationFailed.on(f"vehicle.{key}", f"one of {', '.join(VEHICLE_FIELDS)}")
        if value is None:
            continue
        text_value = str(value).strip()
        limit = 500 if key == "notes" else 100
        if len(text_value) > limit:
            raise ValidationFailed.on(f"vehicle.{key}", f"at most {limit} characters")
        if text_value:
            out[key] = text_value
    return out or None


#: Roles that can receive an alert: people who see the live stream.
RECIPIENT_ROLES = frozenset(r.value for r in Role if allowed(r, Action.STREAM_READ))


def _check_recipients(
    session: Session, roles: Sequence[str] | None, jurisdictions: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    out_roles: list[str] = []
    for i, role in enumerate(roles or ()):
        if role not in RECIPIENT_ROLES:
            raise ValidationFailed.on(
                f"recipients.roles[{i}]", f"one of {', '.join(sorted(RECIPIENT_ROLES))}"
            )
        if role not in out_roles:
            out_roles.append(role)
    codes: list[str] = []
    for i, code in enumerate(jurisdictions or ()):
        try:
            auth_service.get_jurisdiction(session, code=code)
        except NotFound:
            raise ValidationFailed.on(
                f"recipients.jurisdictions[{i}]", f"no jurisdiction has the code {code!r}"
            ) from None
        if code not in codes:
            codes.append(code)
    # A jurisdiction inside another listed one adds nobody: keep the outer one.
    codes = [c for c in codes if not any(o != c and c.startswith(o) for o in codes)]
    return out_roles, codes


# --- the version counter and the per-process index -----------------------------------


def _bump_version(session: Session) -> int:
    """Raise the counter (taking its row lock until commit) and return the new value."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(WatchlistVersion).values(id=1, version=0)
                        .on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(sqlite_insert(WatchlistVersion).values(id=1, version=0)
                        .on_conflict_do_nothing())
    version = int(
        session.execute(
            text("UPDATE watchlist_version SET version = version + 1 WHERE id = 1 "
                 "RETURNING version")
        ).scalar_one()
    )
    if not session.info.get("watchlist_stale_hook"):
        session.info["watchlist_stale_hook"] = True
        bind = session.get_bind()
        after_commit(session, lambda: _mark_stale(bind))
    return version


def current_version(session: Session) -> int:
    return int(
        session.scalar(select(WatchlistVersion.version).where(WatchlistVersion.id == 1)) or 0
    )


@dataclass
class _CachedIndex:
    index: WatchIndex
    version: int
    checked: float
    stale: bool = False
    #: For monitoring: full builds and incremental updates so far.
    builds: int = 1
    updates: int = 0


# One index per database (engine) per process. The lock guards the index: the matcher
# is not safe against a change while another thread matches.
_indexes: weakref.WeakKeyDictionary[Any, _CachedIndex] = weakref.WeakKeyDictionary()
_lock = threading.RLock()


def _engine_of(session: Session) -> Any:
    bind = session.get_bind()
    return bind if isinstance(bind, Engine) else getattr(bind, "engine", bind)


def _mark_stale(bind: Any) -> None:
    engine = bind if isinstance(bind, Engine) else getattr(bind, "engine", bind)
    with _lock:
        cached = _indexes.get(engine)
        if cached is not None:
            cached.stale = True


def reset_index_cache() -> None:
    """Forget every process-local index (tests use this to act as a new process)."""
    with _lock:
        _indexes.clear()


def _as_entry(row: Any) -> Entry:
    return Entry(
        id=row.id, pattern=row.pattern, priority=row.priority, expires_at=row.expires_at,
        status=row.status, reason=row.reason,
    )


# Plain table columns: a Core select skips the ORM's row loading (a third of a
# million-entry build).
_T = WatchEntry.__table__.c
_INDEX_COLUMNS = (_T.id, _T.pattern, _T.priority, _T.expires_at, _T.status, _T.reason)


def _build(session: Session, version: int) -> _CachedIndex:
    rows = session.execute(
        select(*_INDEX_COLUMNS).where(_T.status == Status.ACTIVE)
    ).all()
    try:
        # The bulk build compiles each partial bucket once (a million entries: seconds).
        index = WatchIndex.build((_as_entry(row) for row in rows), DEFAULT_CONFUSABLES)
    except ValueError:
        # A stored pattern the matcher refuses (written by an older version?): index the
        # others one by one and say which.
        index = WatchIndex(DEFAULT_CONFUSABLES)
        for row in rows:
            try:
                index.add(_as_entry(row))
            except ValueError:
                log.warning("watch-list entry %s cannot be indexed", row.id, exc_info=True)
    if len(rows) >= FREEZE_AT:
        # A million entries are millions of objects that live as long as the process.
        # Every full collection of the cyclic garbage collector would walk all of them —
        # seconds with the whole process stopped (5 s for a million entries), a pause
        # that lands on whichever read or alert is in flight. Frozen, they are left out;
        # they are still freed by reference counting when a rebuild replaces them.
        gc.freeze()
    return _CachedIndex(index=index, version=version, checked=time.monotonic())


def _refresh(session: Session) -> WatchIndex:
    """The session's database's index, brought up to date if it may be behind (lock held)."""
    engine = _engine_of(session)
    cached = _indexes.get(engine)
    now = time.monotonic()
    if cached is not None and not cached.stale and now - cached.checked < CHECK_INTERVAL:
        return cached.index
    version = current_version(session)
    if cached is None or version < cached.version:
        # First use, or the counter went back (a restored database): start again.
        builds = cached.builds + 1 if cached is not None else 1
        cached = _build(session, version)
        cached.builds = builds
        _indexes[engine] = cached
        return cached.index
    if version > cached.version:
        changed = session.execute(
            select(*_INDEX_COLUMNS).where(_T.version > cached.version)
        ).all()
        for row in changed:
            if row.status == Status.ACTIVE:
                try:
                    cached.index.add(_as_entry(row))
                except ValueError:
                    log.warning("watch-list entry %s cannot be indexed", row.id)
            else:
                cached.index.remove(row.id)
        cached.updates += 1
        cached.version = version
    cached.checked = now
    cached.stale = False
    return cached.index


def index_stats(session: Session) -> dict[str, int]:
    """Sizes of this process's index for the session's database (refreshing it first)."""
    with _lock:
        index = _refresh(session)
        cached = _indexes[_engine_of(session)]
        return {**index.stats(), "version": cached.version, "builds": cached.builds,
                "updates": cached.updates}


class Sighting(Protocol):
    """What matching needs of a read: its normalised plate and when it was captured
    (:class:`~anwang.checkpoints.facts.ReadFacts`, or the reads of a batch being stored)."""

    @property
    def plate(self) -> str: ...

    @property
    def captured_at(self) -> datetime: ...


_S = TypeVar("_S", bound=Sighting)


def match_reads(session: Session, *, reads: Sequence[_S]) -> list[tuple[_S, list[Hit]]]:
    """The reads that match at least one active, unexpired entry, each with its hits
    (best first; see :meth:`WatchIndex.match`). The matching time is each read's
    ``captured_at``: an entry matches reads captured strictly before its expiry."""
    out: list[tuple[_S, list[Hit]]] = []
    with _lock:
        index = _refresh(session)
        match = index.match
        for read in reads:
            hits = match(read.plate, read.captured_at)
            if hits:
                out.append((read, hits))
    return out


# --- entries --------------------------------------------------------------------------


def _entry_audit(
    action: str, entry: WatchEntry, *, actor: str | None, actor_role: str | None,
    reason: str | None = None, data: dict[str, Any] | None = None, at: datetime | None = None,
) -> dict[str, Any]:
    return {"action": action, "actor": actor, "actor_role": actor_role,
            "subject": subject_of(entry.id), "case_ref": entry.case_ref, "reason": reason,
            "data": {"status": entry.status, "reason": entry.reason, **(data or {})}, "at": at}


def _audit_entry(
    session: Session, action: str, entry: WatchEntry, *, actor: str | None,
    actor_role: str | None, reason: str | None = None, data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    audit.record(session, **_entry_audit(action, entry, actor=actor, actor_role=actor_role,
                                         reason=reason, data=data, at=at))


def _publish(session: Session, name: str, entry: WatchEntry, actor: str | None) -> None:
    publish_after_commit(session, events.entry_event(name, {
        "entry_id": entry.id, "status": entry.status, "reason": entry.reason,
        "priority": entry.priority, "kind": entry.kind, "owner": entry.owner,
        "expires_at": entry.expires_at.isoformat(),
        "summary": f"{entry.pattern} · {entry.reason} · {entry.status}",
    }, actor=actor))


def create_entry(
    session: Session,
    *,
    pattern: str,
    reason: str,
    legal_basis: str | None,
    case_ref: str | None,
    priority: int,
    expires_at: datetime | None,
    actor: str,
    actor_role: str | None = None,
    vehicle: Mapping[str, Any] | None = None,
    recipient_roles: Sequence[str] | None = None,
    recipient_jurisdictions: Sequence[str] | None = None,
    max_days: int = DEFAULT_MAX_DAYS,
    now: datetime | None = None,
) -> WatchEntry:
    """A new ``pending`` entry owned by ``actor`` (audited ``entry.created``)."""
    now = now or utcnow()
    text_pattern, kind = normalise_pattern(pattern)
    checked_reason = _check_reason(reason)
    basis = _required_text("legal_basis", legal_basis, 2000)
    ref = _required_text("case_ref", case_ref, 100)
    _check_priority(priority)
    expiry = _check_expiry(expires_at, now=now, max_days=max_days)
    cleaned = _clean_vehicle(vehicle)
    roles, codes = _check_recipients(session, recipient_roles, recipient_jurisdictions)
    entry = WatchEntry(
        id=new_id(), pattern=text_pattern, kind=kind.value, reason=checked_reason.value,
        legal_basis=basis, case_ref=ref, priority=priority, status=Status.PENDING.value,
        expires_at=expiry, vehicle=cleaned, recipient_roles=roles,
        recipient_jurisdictions=codes, owner=actor, owner_role=actor_role,
        created_at=now, updated_at=now, version=_bump_version(session),
    )
    session.add(entry)
    session.flush()
    _audit_entry(session, "anwang.watchlist.entry.created", entry, actor=actor,
                 actor_role=actor_role, data={
                     "pattern": entry.pattern, "kind": entry.kind, "priority": priority,
                     "expires_at": expiry.isoformat(), "legal_basis": basis,
                     "recipients": {"roles": roles, "jurisdictions": codes},
                 }, at=now)
    _publish(session, events.ENTRY_CREATED, entry, actor)
    return entry


def get_entry(session: Session, *, entry_id: str, for_update: bool = False) -> WatchEntry:
    stmt = select(WatchEntry).where(WatchEntry.id == entry_id)
    if for_update:
        stmt = stmt.with_for_update()
    entry = session.scalars(stmt).one_or_none()
    if entry is None:
        raise NotFound(f"no watch-list entry {entry_id!r}", code="anwang.watchlist.entry_not_found")
    return entry


def _touch(session: Session, entry: WatchEntry, now: datetime) -> None:
    entry.updated_at = now
    entry.version = _bump_version(session)


def approve_entry(
    session: Session, *, entry_id: str, actor: str, actor_role: str | None = None,
    now: datetime | None = None,
) -> WatchEntry:
    """Make a pending entry ``active``. The caller must hold ``watchlist.approve`` (the
    route checks); the owner may not approve their own entry (403
    ``anwang.watchlist.own_entry``); only pending, unexpired entries (else 409)."""
    now = now or utcnow()
    entry = get_entry(session, entry_id=entry_id, for_update=True)
    if entry.owner == actor:
        raise PermissionDenied(
            "The owner of an entry cannot approve it: a second person must.",
            code="anwang.watchlist.own_entry",
        )
    if entry.status != Status.PENDING:
        raise Conflict(f"The entry is {entry.status}, not pending.",
                       code="anwang.watchlist.not_pending")
    if entry.expires_at <= now:
        raise Conflict("The entry has expired; renew it first.",
                       code="anwang.watchlist.expired")
    entry.status = Status.ACTIVE.value
    entry.approved_by = actor
    entry.approved_at = now
    _touch(session, entry, now)
    _audit_entry(session, "anwang.watchlist.entry.approved", entry, actor=actor,
                 actor_role=actor_role, data={"owner": entry.owner}, at=now)
    _publish(session, events.ENTRY_APPROVED, entry, actor)
    return entry


def _may_change(entry: WatchEntry, actor: str, actor_role: str | None) -> bool:
    """The owner, or someone who may approve entries."""
    return entry.owner == actor or (
        actor_role is not None and allowed(actor_role, Action.WATCHLIST_APPROVE)
    )


def revoke_entry(
    session: Session, *, entry_id: str, actor: str, actor_role: str | None = None,
    reason: str | None = None, now: datetime | None = None,
) -> WatchEntry:
    """End a pending or active entry at once (409 otherwise). The owner or an approver
    may (403 ``anwang.watchlist.not_owner`` otherwise)."""
    now = now or utcnow()
    entry = get_entry(session, entry_id=entry_id, for_update=True)
    if not _may_change(entry, actor, actor_role):
        raise PermissionDenied("Only the owner or an approver may revoke this entry.",
                               code="anwang.watchlist.not_owner")
    if entry.status not in LIVE:
        raise Conflict(f"The entry is already {entry.status}.",
                       code="anwang.watchlist.not_live")
    why = (reason or "").strip()[:2000] or None
    entry.status = Status.REVOKED.value
    entry.revoked_by = actor
    entry.revoked_at = now
    entry.revoke_reason = why
    _touch(session, entry, now)
    _audit_entry(session, "anwang.watchlist.entry.revoked", entry, actor=actor,
                 actor_role=actor_role, reason=why, at=now)
    _publish(session, events.ENTRY_REVOKED, entry, actor)
    return entry


def renew_entry(
    session: Session, *, entry_id: str, expires_at: datetime | None, actor: str,
    actor_role: str | None = None, max_days: int = DEFAULT_MAX_DAYS,
    now: datetime | None = None,
) -> WatchEntry:
    """Give an entry a new expiry, at most ``max_days`` from now.

    A pending or active entry keeps its status. An expired one goes back to ``pending``:
    it needs a second person's approval again. Revoked entries stay revoked (409).
    """
    now = now or utcnow()
    entry = get_entry(session, entry_id=entry_id, for_update=True)
    if not _may_change(entry, actor, actor_role):
        raise PermissionDenied("Only the owner or an approver may renew this entry.",
                               code="anwang.watchlist.not_owner")
    if entry.status == Status.REVOKED:
        raise Conflict("A revoked entry cannot be renewed; create a new one.",
                       code="anwang.watchlist.not_live")
    expiry = _check_expiry(expires_at, now=now, max_days=max_days)
    before = entry.expires_at
    was = entry.status
    expired = entry.status == Status.EXPIRED or entry.expires_at <= now
    entry.expires_at = expiry
    if expired:
        entry.status = Status.PENDING.value
        entry.approved_by = None
        entry.approved_at = None
    _touch(session, entry, now)
    _audit_entry(session, "anwang.watchlist.entry.renewed", entry, actor=actor,
                 actor_role=actor_role, data={
                     "expires_at": expiry.isoformat(), "previous_expires_at": before.isoformat(),
                     "previous_status": was,
                 }, at=now)
    _publish(session, events.ENTRY_RENEWED, entry, actor)
    return entry


def expire_entries(session: Session, *, now: datetime | None = None, limit: int = 1000) -> int:
    """Mark pending and active entries whose expiry has passed ``expired``; returns how
    many. (They stopped matching at their expiry already: the index compares times.)"""
    now = now or utcnow()
    stmt = (
        select(WatchEntry)
        .where(WatchEntry.status.in_([s.value for s in LIVE]), WatchEntry.expires_at <= now)
        .order_by(WatchEntry.expires_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    due = list(session.scalars(stmt))
    entries: list[dict[str, Any]] = []
    for entry in due:
        was = entry.status
        entry.status = Status.EXPIRED.value
        _touch(session, entry, now)
        entries.append(_entry_audit(
            "anwang.watchlist.entry.expired", entry, actor="anwang", actor_role=None,
            data={"previous_status": was, "expires_at": entry.expires_at.isoformat()}, at=now))
        _publish(session, events.ENTRY_EXPIRED, entry, None)
    # One entry per watch-list entry, appended together (entries imported together
    # expire together).
    audit.record_many(session, entries)
    return len(due)


def list_entries(
    session: Session,
    *,
    status: str | None = None,
    reason: str | None = None,
    case_ref: str | None = None,
    owner: str | None = None,
    source: str | None = None,
    pattern: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[WatchEntry]:
    """Newest first. ``pattern`` finds entries whose pattern contains the text."""
    stmt = select(WatchEntry).order_by(WatchEntry.created_at.desc(), WatchEntry.id.desc())
    if status:
        stmt = stmt.where(WatchEntry.status == status)
    if reason:
        stmt = stmt.where(WatchEntry.reason == reason)
    if case_ref:
        stmt = stmt.where(WatchEntry.case_ref == case_ref)
    if owner:
        stmt = stmt.where(WatchEntry.owner == owner)
    if source:
        stmt = stmt.where(WatchEntry.source == source)
    if pattern:
        needle = plates.normalise(pattern).replace("\\", "").replace("%", "").replace("_", "")
        if needle:
            stmt = stmt.where(WatchEntry.pattern.contains(needle))
    return session.scalars(stmt.limit(max(1, min(limit, 1000))).offset(max(0, offset))).all()


def entries_by_id(session: Session, *, ids: Iterable[str]) -> dict[str, WatchEntry]:
    wanted = list(set(ids))
    if not wanted:
        return {}
    rows = session.scalars(select(WatchEntry).where(WatchEntry.id.in_(wanted)))
    return {e.id: e for e in rows}


def entry_history(session: Session, *, entry: WatchEntry) -> list[AuditEntry]:
    """The entry's audit entries, oldest first, with its import batch's when it has one."""
    rows = list(audit_service.list_entries(session, subject=subject_of(entry.id), limit=1000))
    if entry.batch_id:
        rows += audit_service.list_entries(
            session, subject=BATCH_SUBJECT + entry.batch_id, limit=100
        )
    return sorted(rows, key=lambda e: e.seq)


def count_active_by_reason(session: Session, *, at: datetime) -> dict[str, int]:
    """Entries active at ``at`` (approved, not revoked, not yet expired), by reason.
    For the transparency report."""
    rows = session.execute(
        select(WatchEntry.reason, func.count())
        .where(WatchEntry.status == Status.ACTIVE, WatchEntry.expires_at > at)
        .group_by(WatchEntry.reason)
    ).all()
    return {reason: int(n) for reason, n in rows}


def vehicle_summary(vehicle: Mapping[str, Any] | None) -> str:
    """One line describing the vehicle, e.g. ``white Toyota Camry sedan; dented bumper``."""
    if not vehicle:
        return ""
    words = [str(vehicle[k]) for k in ("colour", "make", "model", "type") if vehicle.get(k)]
    line = " ".join(words)
    notes = vehicle.get("notes")
    if notes:
        line = f"{line}; {notes}" if line else str(notes)
    return line


# --- imports of external lists -------------------------------------------------------

_PLATE_COLUMNS = ("plate", "pattern", "号牌", "车牌", "号牌号码")
_COLUMN_ALIASES = {
    "color": "colour", "颜色": "colour", "车身颜色": "colour", "品牌": "make",
    "型号": "model", "车型": "type", "类型": "type", "备注": "notes", "note": "notes",
    "优先级": "priority",
}


@dataclass
class ParsedList:
    """The rows of an uploaded list: accepted ones, and refused ones with their line."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


def parse_list(content: str | bytes, *, default_priority: int = 2) -> ParsedList:
    """Read a CSV list of plates: a header row with a ``plate`` column (or ``pattern``,
    号牌, 车牌), optional ``priority``, ``type``, ``colour``, ``make``, ``model`` and
    ``notes``; other columns are ignored. Each bad row is refused on its own with its
    line number; a plate that appears twice is refused the second time. Whole-list
    problems (no plate column, too many rows) raise :class:`ValidationFailed`."""
    if isinstance(content, bytes):
        try:
            content = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValidationFailed.on("file", "must be UTF-8 text") from None
    content = content.lstrip("\ufeff")
    reader = csv.DictReader(io.StringIO(content))
    header = [(h or "").strip().lower() for h in (reader.fieldnames or [])]
    plate_col = next((h for h in header if h in _PLATE_COLUMNS), None)
    if plate_col is None:
        raise ValidationFailed.on("file", "needs a header row with a 'plate' column")
    reader.fieldnames = header
    out = ParsedList()
    seen: dict[str, int] = {}
    for raw in reader:
        line = reader.line_num
        if len(out.rows) + len(out.rejected) >= MAX_IMPORT_ROWS:
            raise ValidationFailed.on("file", f"at most {MAX_IMPORT_ROWS} rows")
        row = {(_COLUMN_ALIASES.get(k, k) if k else k): (v or "").strip()
               for k, v in raw.items() if isinstance(v, str) or v is None}
        value = row.get(plate_col, "")
        if not value and not any(row.values()):
            continue  # a blank line
        if any(c in _WILDCARDS for c in value):
            out.rejected.append({"line": line, "code": "partial_pattern",
                                 "detail": "lists hold whole plates; enter partial patterns "
                                           "one by one"})
            continue
        try:
            pattern, _ = normalise_pattern(value)
        except ValidationFailed as exc:
            out.rejected.append({"line": line, "code": "invalid_plate",
                                 "detail": exc.errors[0].reason if exc.errors else exc.detail})
            continue
        if pattern in seen:
            out.rejected.append({"line": line, "code": "duplicate",
                                 "detail": f"the same plate as line {seen[pattern]}"})
            continue
        priority = default_priority
        if row.get("priority"):
            try:
                priority = _check_priority(int(row["priority"]))
            except (ValueError, ValidationFailed):
                out.rejected.append({"line": line, "code": "invalid_priority",
                                     "detail": "priority is 1, 2 or 3"})
                continue
        try:
            vehicle = _clean_vehicle({k: row[k] for k in VEHICLE_FIELDS if row.get(k)})
        except ValidationFailed as exc:
            out.rejected.append({"line": line, "code": "invalid_vehicle",
                                 "detail": exc.detail})
            continue
        seen[pattern] = line
        out.rows.append({"pattern": pattern, "priority": priority, "vehicle": vehicle})
    return out


def import_list(
    session: Session,
    *,
    source: str,
    parsed: ParsedList,
    reason: str,
    legal_basis: str | None,
    case_ref: str | None,
    expires_at: datetime | None,
    actor: str,
    actor_role: str | None = None,
    priority: int = 2,
    refresh: bool = False,
    max_days: int = DEFAULT_MAX_DAYS,
    now: datetime | None = None,
) -> WatchlistBatch:
    """Store an uploaded list as a ``pending`` batch (nothing matches yet); audited
    ``batch.imported``. :func:`approve_batch` by a second person puts it into force."""
    now = now or utcnow()
    src = _required_text("source", source, 100)
    checked_reason = _check_reason(reason)
    basis = _required_text("legal_basis", legal_basis, 2000)
    ref = _required_text("case_ref", case_ref, 100)
    _check_priority(priority)
    expiry = _check_expiry(expires_at, now=now, max_days=max_days)
    if not parsed.rows and not refresh:
        raise ValidationFailed.on("file", "no valid row", code="anwang.watchlist.empty_list")
    batch = WatchlistBatch(
        id=new_id(), source=src, status="pending", reason=checked_reason.value,
        legal_basis=basis, case_ref=ref, priority=priority, expires_at=expiry,
        refresh=refresh, rows=parsed.rows, rejected=parsed.rejected, imported_by=actor,
        imported_at=now,
    )
    session.add(batch)
    session.flush()
    audit.record(
        session, "anwang.watchlist.batch.imported", actor=actor, actor_role=actor_role,
        subject=BATCH_SUBJECT + batch.id, case_ref=ref, reason=basis,
        result_count=len(parsed.rows),
        data={"source": src, "rows": len(parsed.rows), "rejected": len(parsed.rejected),
              "refresh": refresh, "reason": checked_reason.value,
              "expires_at": expiry.isoformat()},
        at=now,
    )
    publish_after_commit(session, events.entry_event(events.BATCH_IMPORTED, {
        "batch_id": batch.id, "source": src, "rows": len(parsed.rows),
        "summary": f"{src}: {len(parsed.rows)}",
    }, actor=actor))
    return batch


def get_batch(session: Session, *, batch_id: str, for_update: bool = False) -> WatchlistBatch:
    stmt = select(WatchlistBatch).where(WatchlistBatch.id == batch_id)
    if for_update:
        stmt = stmt.with_for_update()
    batch = session.scalars(stmt).one_or_none()
    if batch is None:
        raise NotFound(f"no import batch {batch_id!r}", code="anwang.watchlist.batch_not_found")
    return batch


def approve_batch(
    session: Session, *, batch_id: str, actor: str, actor_role: str | None = None,
    now: datetime | None = None,
) -> WatchlistBatch:
    """Put a pending batch into force as one approved act.

    For each row: a new ``active`` entry (owner the importer, approver ``actor``, source
    the batch's), or — when an entry of that source for that plate is already live — a
    renewal to the batch's expiry if that is later. With ``refresh``, the source's live
    entries whose plate is not on the list are revoked. Each entry change is audited
    on its own, the batch once (``batch.approved`` with the counts).
    """
    now = now or utcnow()
    batch = get_batch(session, batch_id=batch_id, for_update=True)
    if batch.imported_by == actor:
        raise PermissionDenied("Whoever imported a list cannot approve it: a second "
                               "person must.", code="anwang.watchlist.own_batch")
    if batch.status != "pending":
        raise Conflict(f"The batch is {batch.status}, not pending.",
                       code="anwang.watchlist.not_pending")
    if batch.expires_at <= now:
        raise Conflict("The batch's expiry has passed; import the list again.",
                       code="anwang.watchlist.expired")
    live = {
        e.pattern: e
        for e in session.scalars(
            select(WatchEntry).where(
                WatchEntry.source == batch.source,
                WatchEntry.status.in_([s.value for s in LIVE]),
            ).with_for_update()
        )
    }
    version = _bump_version(session)
    counts = {"created": 0, "renewed": 0, "unchanged": 0, "revoked": 0}
    on_list: set[str] = set()
    new_entries: list[WatchEntry] = []
    for row in batch.rows:
        pattern = row["pattern"]
        on_list.add(pattern)
        existing = live.get(pattern)
        if existing is not None:
            if existing.expires_at < batch.expires_at or existing.status != Status.ACTIVE:
                before = existing.expires_at
                existing.expires_at = max(existing.expires_at, batch.expires_at)
                existing.status = Status.ACTIVE.value
                existing.approved_by = existing.approved_by or actor
                existing.approved_at = existing.approved_at or now
                existing.batch_id = batch.id
                existing.updated_at = now
                existing.version = version
                _audit_entry(session, "anwang.watchlist.entry.renewed", existing,
                             actor=actor, actor_role=actor_role, data={
                                 "batch": batch.id, "previous_expires_at": before.isoformat(),
                                 "expires_at": existing.expires_at.isoformat()}, at=now)
                counts["renewed"] += 1
            else:
                counts["unchanged"] += 1
            continue
        new_entries.append(WatchEntry(
            id=new_id(), pattern=pattern, kind=PatternKind.EXACT.value, reason=batch.reason,
            legal_basis=batch.legal_basis, case_ref=batch.case_ref,
            priority=row.get("priority") or batch.priority, status=Status.ACTIVE.value,
            expires_at=batch.expires_at, vehicle=row.get("vehicle"), recipient_roles=[],
            recipient_jurisdictions=[], owner=batch.imported_by, owner_role=None,
            approved_by=actor, approved_at=now, source=batch.source, batch_id=batch.id,
            created_at=now, updated_at=now, version=version,
        ))
    session.add_all(new_entries)
    session.flush()
    for entry in new_entries:
        _audit_entry(session, "anwang.watchlist.entry.created", entry, actor=batch.imported_by,
                     actor_role=None, data={"pattern": entry.pattern, "kind": entry.kind,
                                            "batch": batch.id, "approved_by": actor,
                                            "expires_at": entry.expires_at.isoformat()},
                     at=now)
    counts["created"] = len(new_entries)
    if batch.refresh:
        for pattern, entry in live.items():
            if pattern in on_list:
                continue
            entry.status = Status.REVOKED.value
            entry.revoked_by = actor
            entry.revoked_at = now
            entry.revoke_reason = f"no longer on the list {batch.source!r} (batch {batch.id})"
            entry.updated_at = now
            entry.version = version
            _audit_entry(session, "anwang.watchlist.entry.revoked", entry, actor=actor,
                         actor_role=actor_role, reason=entry.revoke_reason,
                         data={"batch": batch.id}, at=now)
            counts["revoked"] += 1
    batch.status = "approved"
    batch.approved_by = actor
    batch.approved_at = now
    batch.result = counts
    audit.record(
        session, "anwang.watchlist.batch.approved", actor=actor, actor_role=actor_role,
        subject=BATCH_SUBJECT + batch.id, case_ref=batch.case_ref,
        result_count=counts["created"] + counts["renewed"],
        data={"source": batch.source, "imported_by": batch.imported_by, **counts}, at=now,
    )
    publish_after_commit(session, events.entry_event(events.BATCH_APPROVED, {
        "batch_id": batch.id, "source": batch.source, **counts,
        "summary": f"{batch.source}: +{counts['created']} −{counts['revoked']}",
    }, actor=actor))
    return batch


def check_approver(session: Session, *, username: str, importer: str) -> tuple[str, str]:
    """(username, role) of an existing, active user who may approve entries and is not
    ``importer``; for the command line, where the approver is named, not signed in."""
    try:
        user = auth_service.get_user(session, username=username)
    except NotFound:
        raise ValidationFailed.on("approved_by", f"no user {username!r}") from None
    if not user.active:
        raise ValidationFailed.on("approved_by", f"{username!r} is deactivated")
    if not allowed(user.role, Action.WATCHLIST_APPROVE):
        raise PermissionDenied(f"{username!r} ({user.role}) may not approve watch-list "
                               "entries.", code="anwang.auth.permission_denied")
    if user.username == importer:
        raise PermissionDenied("The approver must be someone other than the importer.",
                               code="anwang.watchlist.own_batch")
    return user.username, user.role


def stats_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(WatchEntry.status, func.count()).group_by(WatchEntry.status))
    return {status: int(n) for status, n in rows}


__all__ = [
    "CHECK_INTERVAL",
    "ParsedList",
    "PatternKind",
    "Reason",
    "Status",
    "approve_batch",
    "approve_entry",
    "check_approver",
    "count_active_by_reason",
    "create_entry",
    "current_version",
    "entries_by_id",
    "entry_history",
    "expire_entries",
    "get_batch",
    "get_entry",
    "import_list",
    "index_stats",
    "list_entries",
    "match_reads",
    "normalise_pattern",
    "parse_list",
    "renew_entry",
    "reset_index_cache",
    "revoke_entry",
    "vehicle_summary",
]
