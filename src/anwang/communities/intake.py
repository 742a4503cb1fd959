"""The intake: device messages → readings → rules → device state, samples and alarms.

:func:`ingest` is the one path every device message takes, whether it came over MQTT
(a batch of up to a few thousand, :mod:`anwang.communities.handlers`) or HTTP (one
request, :func:`anwang.communities.service.ingest_http`). In one transaction it:

1. looks the devices up in the :class:`Directory` (an in-memory copy of the registry
   and the rule books, refreshed by ``updated_at``; an id it does not know is asked of
   the database once, then remembered as unknown for a while);
2. parses each message with its device's adapter; a message that fails (not JSON,
   wrong types, impossible values, an event the kind does not have, a timestamp in the
   future...) is dropped and counted by reason in ``device_rejections`` — it never
   fails the batch;
3. stores events with ``ON CONFLICT DO NOTHING RETURNING``: only events that were new
   reach the rules, which is what makes a redelivered or re-posted message raise and
   count nothing twice; and the telemetry samples, with one statement
   (:mod:`anwang.core.bulk`: the batch goes to PostgreSQL as one JSON document).
   Neither depends on the rules' state, so both are written before the next step —
   while the batch before, of the same worker, may still hold the locks
   (:class:`anwang.communities.handlers.Turn`);
4. locks the ``device_status`` rows of the devices concerned (``FOR UPDATE`` on
   PostgreSQL, in id order so that two workers never deadlock; SQLite's writer lock
   already serialises) and reads the rules' state from them, so that two workers given
   messages of one device — shared subscriptions deal messages round-robin, not by
   device — judge them one after the other, each from the state the other committed.
   The state is deliberately not cached in the process: reading it under the lock is
   one indexed query per batch and about a microsecond and a half of decoding per
   device, and it keeps any number of workers, and a restarted one, right;
5. evaluates the rules (:func:`anwang.communities.rules.evaluate`), writes every
   device's new status with one statement (the latest metrics merged over the stored
   ones by the database, the message count added to), and hands the alarm transitions
   to :func:`anwang.communities.alarms.apply`.

The caller commits; the MQTT adapter acknowledges the messages only after that. Nothing
is written per message but the sample and, when an alarm changes, its row, audit entry
and event.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from anwang.communities import adapters, alarms
from anwang.communities.adapters import Reason, Rejected
from anwang.communities.models import (
    Community,
    Device,
    DeviceEvent,
    DeviceRejection,
    DeviceRuleSet,
    DeviceSample,
    DeviceStatus,
)
from anwang.communities.rules import (
    DEFAULT_MAX_FUTURE_S,
    DEFAULT_RULES,
    KIND_EVENTS,
    STATE_VERSION,
    DeviceKind,
    DeviceState,
    Reading,
    Rule,
    RuleBook,
    Transition,
    evaluate,
    merge_rules,
)
from anwang.core.bulk import dumps, upsert

log = logging.getLogger(__name__)

#: Topics devices publish to: ``anwang/devices/<device id>/<channel>``.
TOPIC_PREFIX = "anwang/devices/"
TOPIC_FILTER = "anwang/devices/+/+"
#: Rows per statement when reading or writing in bulk (under both databases' limits on
#: bound parameters).
CHUNK = 2000


class Inbound(NamedTuple):
    """One message as it arrived. ``received_at`` is anwang's clock, epoch seconds.

    A named tuple, not a dataclass: one is made per message, and a tuple is made in a
    third of the time of a frozen dataclass."""

    device_id: str
    channel: str
    payload: bytes
    received_at: float


def from_topic(topic: str, payload: bytes, received_at: float) -> Inbound | None:
    """The message on ``anwang/devices/<id>/<channel>``, or None for any other topic."""
    parts = topic.split("/")
    if (len(parts) != 4 or parts[1] != "devices" or parts[0] != "anwang" or not parts[2]
            or not parts[3]):
        return None
    return Inbound(parts[2], parts[3], payload, received_at)


def lane_of(lanes: int) -> Callable[[str], int]:
    """The lane (0 … ``lanes`` - 1) of a topic: by its device, so that one device's
    messages always share a lane."""
    if lanes <= 1:
        return lambda topic: 0
    cut = len(TOPIC_PREFIX)

    def lane(topic: str) -> int:
        return hash(topic[cut:topic.rfind("/")]) % lanes

    return lane


class DeviceInfo(NamedTuple):
    """What the intake needs of a registered device.

    A named tuple of plain values: the directory holds one per registered device
    (100,000 or more), and a tuple of atomic values is left alone by Python's cyclic
    garbage collector, where a dataclass instance would be walked at every full
    collection — which would cost the intake more than parsing its messages."""

    id: str
    kind: str
    adapter: str
    community: str
    jurisdiction: str | None
    lat: float
    lon: float
    heartbeat_s: int
    active: bool
    floor: int | None
    building: str | None


_D = Device.__table__.c
#: Core columns (not ORM attributes): the directory reads 100,000 rows at a time, and
#: ORM row processing would cost more than the query.
_DEVICE_COLUMNS = (_D.id, _D.kind, _D.adapter, _D.community_code, _D.jurisdiction_code,
                   _D.lat, _D.lon, _D.heartbeat_s, _D.active, _D.floor, _D.building)
#: How far back a refresh looks before the newest change it has seen, to catch
#: transactions that committed after a later-stamped one (a long import).
REFRESH_OVERLAP = timedelta(minutes=1)


def _info(row: Any) -> DeviceInfo:
    return DeviceInfo(row[0], row[1], row[2], row[3], row[4], float(row[5]), float(row[6]),
                      int(row[7]), bool(row[8]), row[9], row[10])


class Directory:
    """The registry and rule books in memory, for the intake's lookups.

    Devices are loaded once, then every ``refresh_s`` seconds those whose ``updated_at``
    is at most a minute older than the newest seen are read again (the overlap covers
    transactions that committed out of order). An id it does not hold is read from the
    database at once — a device registered a moment ago is not refused — and an id the
    database does not hold either is remembered as unknown for ``miss_ttl_s``, so that
    messages for made-up ids cost one query per id and period, not one per message.
    Rule books are rebuilt when the rule sets change. Thread-safe.
    """

    def __init__(self, *, refresh_s: float = 5.0, miss_ttl_s: float = 30.0) -> None:
        self.refresh_s = refresh_s
        self.miss_ttl_s = miss_ttl_s
        self._lock = threading.RLock()
        self._devices: dict[str, DeviceInfo] = {}
        self._misses: dict[str, float] = {}
        self._newest: datetime | None = None
        self._next_refresh = 0.0
        self._loaded = False
        self._rules_version: tuple[Any, ...] | None = None
        self._rule_sets: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._books: dict[tuple[str, str], RuleBook] = {}
        self._communities: dict[str, tuple[str, float, float, str | None]] = {}
        self._communities_version: tuple[Any, ...] | None = None
        self._window: tuple[Any, ...] | None = None

    def mark_stale(self) -> None:
        """Refresh at the next lookup (called after a registry change commits)."""
        with self._lock:
            self._next_refresh = 0.0
            self._misses.clear()

    def refresh(self, session: Session, *, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not force and now < self._next_refresh:
                return
            stmt = select(*_DEVICE_COLUMNS, _D.updated_at)
            if self._loaded and self._newest is not None:
                since = self._newest - REFRESH_OVERLAP
                # One indexed count first: after a bulk import every row is "recent" for
                # a minute, and reading them all again every few seconds would be waste.
                window = tuple(session.execute(
                    select(func.count(), func.max(_D.updated_at)).where(_D.updated_at >= since)
                ).one())
                if window == self._window:
                    self._next_refresh = now + self.refresh_s
                    return
                self._window = window
                stmt = stmt.where(_D.updated_at >= since)
            for row in session.execute(stmt):
                self._devices[row[0]] = _info(row)
                changed: datetime = row[11]
                if self._newest is None or changed > self._newest:
                    self._newest = changed
            if not self._loaded and self._newest is not None:
                self._window = tuple(session.execute(
                    select(func.count(), func.max(_D.updated_at))
                    .where(_D.updated_at >= self._newest - REFRESH_OVERLAP)
                ).one())
            self._loaded = True
            self._refresh_communities(session)
            self._refresh_rules(session)
            self._next_refresh = now + self.refresh_s

    def _refresh_communities(self, session: Session) -> None:
        c = Community.__table__.c
        version = tuple(session.execute(select(func.count(), func.max(c.updated_at))).one())
        if version == self._communities_version:
            return
        rows = session.execute(
            select(c.code, c.name, c.center_lat, c.center_lon, c.jurisdiction_code))
        self._communities = {r[0]: (r[1], float(r[2]), float(r[3]), r[4]) for r in rows}
        self._communities_version = version

    def _refresh_rules(self, session: Session) -> None:
        version = tuple(session.execute(
            select(func.count(), func.max(DeviceRuleSet.updated_at), func.sum(DeviceRuleSet.id))
        ).one())
        if version == self._rules_version:
            return
        sets = session.execute(
            select(DeviceRuleSet.device_kind, DeviceRuleSet.community_code, DeviceRuleSet.rules)
        )
        self._rule_sets = {(k, c): list(r) for k, c, r in sets}
        self._books = {}
        self._rules_version = version

    def lookup(self, session: Session, ids: Iterable[str]) -> dict[str, DeviceInfo]:
        """The registered devices among ``ids`` (active or not)."""
        self.refresh(session)
        now = time.monotonic()
        found: dict[str, DeviceInfo] = {}
        missing: list[str] = []
        with self._lock:
            for i in ids:
                info = self._devices.get(i)
                if info is not None:
                    found[i] = info
                elif self._misses.get(i, 0.0) <= now:
                    missing.append(i)
        for chunk in _chunks(missing, CHUNK):
            rows = session.execute(select(*_DEVICE_COLUMNS).where(Device.id.in_(chunk))).all()
            with self._lock:
                for row in rows:
                    info = _info(row)
                    self._devices[info.id] = info
                    found[info.id] = info
                for i in chunk:
                    if i not in found:
                        self._misses[i] = now + self.miss_ttl_s
                if len(self._misses) > 100_000:
                    self._misses = {k: v for k, v in self._misses.items() if v > now}
            if any(r[3] not in self._communities for r in rows):
                with self._lock:
                    self._communities_version = None
                    self._refresh_communities(session)
        return found

    def book(self, kind: str, community: str) -> RuleBook:
        """The rules of ``kind`` in ``community``: the defaults, the city-wide changes
        of the kind, then the community's. A rule set that no longer makes valid rules
        (edited by hand in the database) is skipped and logged."""
        key = (kind, community)
        book = self._books.get(key)
        if book is not None:
            return book
        with self._lock:
            try:
                rules: tuple[Rule, ...] = DEFAULT_RULES[DeviceKind(kind)]
            except ValueError:
                rules = ()
            for scope in ("", community):
                patches = self._rule_sets.get((kind, scope))
                if patches:
                    try:
                        rules = merge_rules(rules, patches)
                    except ValueError:
                        log.exception("rule set %s/%s is not valid; ignored", kind, scope or "*")
            book = RuleBook.of(rules)
            self._books[key] = book
            return book

    def community(self, code: str) -> tuple[str, float, float, str | None] | None:
        """(name, centre lat, centre lon, jurisdiction) of a community."""
        return self._communities.get(code)


_directories: weakref.WeakKeyDictionary[Engine, Directory] = weakref.WeakKeyDictionary()
_directories_lock = threading.Lock()


def directory_for(session: Session) -> Directory:
    """The directory of the session's database (one per engine and process)."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    with _directories_lock:
        d = _directories.get(engine)
        if d is None:
            d = _directories[engine] = Directory()
        return d


def _chunks(items: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


@dataclass(frozen=True)
class Refusal:
    """A dropped message: its position in the batch, the reason, where and what."""

    index: int
    device_id: str
    reason: str
    detail: str = ""
    field: str | None = None


@dataclass
class IngestReport:
    accepted: int = 0
    refused: list[Refusal] = field(default_factory=list)
    raised: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)
    repeats: int = 0
    #: Events recognised as already stored (redeliveries, retried posts).
    duplicate_events: int = 0


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


#: The events each kind may report, by the kind's name (as the directory holds it).
_KIND_EVENTS: dict[str, frozenset[str]] = {str(k): v for k, v in KIND_EVENTS.items()}


def ingest(
    session: Session,
    *,
    messages: Sequence[Inbound],
    now: datetime,
    directory: Directory | None = None,
    max_future_s: float = DEFAULT_MAX_FUTURE_S,
    before_lock: Callable[[], object] | None = None,
    after_lock: Callable[[], object] | None = None,
) -> IngestReport:
    """Judge and store ``messages`` (see the module docstring). Never raises for what
    a device sent; database errors propagate (the caller retries the batch).

    ``before_lock`` is called before the batch writes anything (not at all when it has
    nothing to write), and ``after_lock`` once the devices' status rows are locked: a
    caller that runs batches at once uses them to take the locks in the order the
    batches came (:class:`anwang.communities.handlers.Turn`)."""
    directory = directory or directory_for(session)
    now_ts = now.timestamp()
    limit = now_ts + max_future_s
    report = IngestReport()
    counts: dict[tuple[str, str], list[Any]] = {}

    def refuse(i: int, device_id: str, reason: str, detail: str, fld: str | None = None) -> None:
        report.refused.append(Refusal(i, device_id, reason, detail, fld))
        entry = counts.get((device_id, reason))
        if entry is None:
            counts[(device_id, reason)] = [1, detail]
        else:
            entry[0] += 1
            entry[1] = detail

    infos = directory.lookup(session, {m.device_id for m in messages})
    parsers = adapters.parsers()
    accepted: dict[str, list[tuple[Inbound, list[Reading]]]] = {}
    for i, m in enumerate(messages):
        info = infos.get(m.device_id)
        if info is None:
            refuse(i, "", Reason.UNKNOWN_DEVICE, m.device_id[:64])
            continue
        if not info.active:
            refuse(i, info.id, Reason.DEVICE_INACTIVE, "")
            continue
        try:
            parse = parsers.get(info.adapter)
            if parse is None:
                raise Rejected(Reason.BAD_SHAPE, f"no adapter named {info.adapter!r}")
            readings = parse(m.channel, m.payload, received_at=m.received_at)
            for r in readings:
                if r.event is not None or not r.ts <= limit:  # (not <=: NaN too)
                    _check(info, r, limit)
        except Rejected as exc:
            refuse(i, info.id, exc.reason, exc.detail[:300], exc.field)
            continue
        except Exception:  # an adapter bug must not stop the intake: count and go on
            log.exception("adapter %s failed on a message of %s", info.adapter, info.id)
            refuse(i, info.id, Reason.HANDLER_ERROR, f"adapter {info.adapter} failed")
            continue
        items = accepted.get(info.id)
        if items is None:
            accepted[info.id] = [(m, readings)]
        else:
            items.append((m, readings))

    if before_lock is not None and (accepted or counts):
        before_lock()  # nothing written before: a batch waiting here holds no row
    if accepted:
        # Events and samples do not depend on the rules' state: written before the
        # devices are locked (while an earlier batch may still hold them).
        events = _store_events(session, accepted, now, report)
        _store_samples(session, accepted)
        _judge(session, accepted, infos, directory, now, max_future_s, report, events,
               after_lock)
    if counts:
        _count_refusals(session, counts, now)
    return report


def _check(info: DeviceInfo, r: Reading, limit: float) -> None:
    """Refuse an event the device's kind does not have and a time ahead of ``limit``."""
    if r.event is not None and r.event not in _KIND_EVENTS.get(info.kind, ()):
        raise Rejected(Reason.UNKNOWN_EVENT, f"{r.event} is not an event of {info.kind}",
                       field="event")
    if not r.ts <= limit:  # also refuses NaN
        raise Rejected(Reason.FUTURE_TIMESTAMP,
                       f"{_utc(r.ts).isoformat() if r.ts == r.ts else r.ts} is ahead of "
                       "anwang's clock", field="ts")


#: Columns of ``device_status`` the intake replaces on every batch (the others:
#: ``messages`` is added to, ``battery_pct`` kept when a batch says nothing of it,
#: ``metrics`` merged key by key).
_STATUS_UPDATE = ("online", "last_seen_at", "offline_after", "offline_since", "last_ts",
                  "rule_state", "updated_at")


def _judge(
    session: Session,
    accepted: dict[str, list[tuple[Inbound, list[Reading]]]],
    infos: Mapping[str, DeviceInfo],
    directory: Directory,
    now: datetime,
    max_future_s: float,
    report: IngestReport,
    events: tuple[set[tuple[str, datetime, str]], bool],
    after_lock: Callable[[], object] | None = None,
) -> None:
    ids = sorted(accepted)
    status = _lock_status(session, ids)
    if after_lock is not None:
        after_lock()
    new_events, had_events = events

    now_ts = now.timestamp()
    status_rows: list[dict[str, Any]] = []
    transitions: list[tuple[DeviceInfo, Transition]] = []
    came_back: list[tuple[DeviceInfo, float]] = []
    fresh = DeviceState()
    for device_id in ids:
        info = infos[device_id]
        items = accepted[device_id]
        book = directory.book(info.kind, info.community)
        online, state = status.get(device_id, (None, fresh))
        simple = len(items) == 1
        if simple and had_events:
            for r in items[0][1]:
                if r.event is not None:
                    simple = False
                    break
        if simple:  # the common case: one message, and no event to check as new
            m, readings = items[0]
            last_seen = m.received_at
        else:
            readings = []
            last_seen = 0.0
            for m, rs in items:
                if m.received_at > last_seen:
                    last_seen = m.received_at
                for r in rs:
                    if r.event is not None:
                        key = (device_id, _utc(r.ts), r.event)
                        if key in new_events:
                            new_events.discard(key)  # judged once, even if sent twice here
                        else:
                            r = Reading(r.ts, r.metrics, None, None)  # already judged
                    readings.append(r)
        ev = evaluate(book, state, readings, now=now_ts, max_future_s=max_future_s)
        if ev.transitions:
            transitions.extend((info, t) for t in ev.transitions)
        if online is False:
            came_back.append((info, last_seen))
        # The latest value of each metric: what readings newer than any judged before
        # say, set over the stored ones by the database (``merge``), so that the old
        # values need not be read.
        old_hw = state.hw
        newest: dict[str, float] | None = None
        for r in readings if len(readings) == 1 else sorted(readings, key=_ts):
            if r.metrics and (old_hw is None or r.ts > old_hw):
                if newest is None:
                    newest = dict(r.metrics)
                else:
                    newest.update(r.metrics)
        hw = ev.state.hw
        missed = book.offline.missed if book.offline is not None else 3
        status_rows.append({
            "device_id": device_id,
            "online": True,
            "last_seen_at": last_seen,
            "offline_after": last_seen + missed * info.heartbeat_s,
            "offline_since": None,
            "last_ts": hw,
            "battery_pct": newest.get("battery_pct") if newest else None,
            "metrics": newest,
            "rule_state": {"v": STATE_VERSION, "hw": hw, "r": ev.state.rules},
            "messages": len(items),
            "updated_at": now,
        })
        report.accepted += len(items)

    upsert(session, DeviceStatus.__table__, status_rows, key=("device_id",),
           update=_STATUS_UPDATE, add=("messages",), keep=("battery_pct",),
           merge=("metrics",), epoch=("last_seen_at", "offline_after", "last_ts"))
    if transitions or came_back:
        outcome = alarms.apply(session, transitions=transitions, came_back=came_back,
                               now=now, directory=directory)
        report.raised.extend(outcome.raised)
        report.cleared.extend(outcome.cleared)
        report.repeats += outcome.repeats


def _ts(r: Reading) -> float:
    return r.ts


def _store_samples(session: Session,
                   accepted: Mapping[str, list[tuple[Inbound, list[Reading]]]]) -> None:
    """One telemetry sample per device and time (of readings with metrics; the last to
    arrive of one device and time wins), an existing one kept."""
    samples: dict[tuple[str, float], Mapping[str, float]] = {}
    for device_id, items in accepted.items():
        for _, rs in items:
            for r in rs:
                if r.metrics:
                    samples[(device_id, r.ts)] = r.metrics
    if samples:
        upsert(session, DeviceSample.__table__,
               [{"device_id": d, "ts": ts, "metrics": m} for (d, ts), m in samples.items()],
               key=("device_id", "ts"), epoch=("ts",))


def _lock_status(session: Session, ids: Sequence[str]) -> dict[str, tuple[bool | None,
                                                                           DeviceState]]:
    """Whether each device is marked online, and its rules' state, its status row
    locked until the transaction ends (``FOR UPDATE`` on PostgreSQL, in id order so that
    two workers never deadlock; SQLite's writer lock already serialises). The state is
    read as text and decoded here (orjson), not by the driver's JSON loader."""
    conn = session.connection()
    table = DeviceStatus.__tablename__
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql(
            f"SELECT device_id, online, rule_state::text FROM {table} "
            "WHERE device_id = ANY(%(ids)s::text[]) ORDER BY device_id FOR UPDATE",
            {"ids": list(ids)},
        ).all()
    else:
        rows = conn.exec_driver_sql(
            f"SELECT device_id, online, rule_state FROM {table} "
            "WHERE device_id IN (SELECT value FROM json_each(?))",
            (dumps(list(ids)).decode(),),
        ).all()
    return {d: (None if online is None else bool(online), _state(text))
            for d, online, text in rows}


def _state(text: str | None) -> DeviceState:
    if not text:
        return DeviceState()
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return DeviceState()  # unreadable: the rules start over (DeviceState.from_json)
    return DeviceState.from_json(data)


def _store_events(
    session: Session,
    accepted: Mapping[str, list[tuple[Inbound, list[Reading]]]],
    now: datetime,
    report: IngestReport,
) -> tuple[set[tuple[str, datetime, str]], bool]:
    """Insert the batch's events; returns the keys of those that were new, and whether
    the batch had any event."""
    rows: dict[tuple[str, datetime, str], dict[str, Any]] = {}
    for device_id, items in accepted.items():
        for m, rs in items:
            for r in rs:
                if r.event is None:
                    continue
                key = (device_id, _utc(r.ts), r.event)
                if key in rows:
                    report.duplicate_events += 1
                    continue
                rows[key] = {"device_id": device_id, "ts": key[1], "event": r.event,
                             "detail": dict(r.detail) if r.detail else None,
                             "received_at": _utc(m.received_at)}
    if not rows:
        return set(), False
    t = DeviceEvent.__table__
    new: set[tuple[str, datetime, str]] = set()
    for d, ts, e in upsert(session, t, list(rows.values()), key=("device_id", "ts", "event"),
                           returning=("device_id", "ts", "event")):
        new.add((d, ts.astimezone(UTC), e))
    report.duplicate_events += len(rows) - len(new)
    return new, True


def _count_refusals(session: Session, counts: dict[tuple[str, str], list[Any]],
                    now: datetime) -> None:
    upsert(session, DeviceRejection.__table__, [
        {"device_id": d, "reason": r, "count": n, "first_at": now, "last_at": now,
         "last_detail": (detail or None) and detail[:300]}
        for (d, r), (n, detail) in sorted(counts.items())
    ], key=("device_id", "reason"), update=("last_at", "last_detail"), add=("count",))


def count_refusal(session: Session, *, device_id: str, reason: str, detail: str,
                  now: datetime) -> None:
    """Count one message refused outside :func:`ingest` (HTTP: a wrong device key)."""
    _count_refusals(session, {(device_id, reason): [1, detail]}, now)
