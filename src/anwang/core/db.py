"""Engine, sessions and the unit of work.

Services never commit. The edge that starts the work (a request dependency, the bus
handler wrapper, a CLI command) opens :meth:`Database.unit_of_work`, which commits once
at the end, rolls back on any error, and only then publishes the events that the work
queued with :func:`publish_after_commit` — so nobody is told about a change that did not
happen.

SQLite runs in WAL mode with ``synchronous=FULL`` and every write transaction begins
``IMMEDIATE``: the single writer lock is taken up front instead of on the first write,
so two transactions never both read the audit chain's head and then race to extend it.
Within one process, write units of work on SQLite also take a process-wide lock before
they start: SQLite has one writer at a time anyway, and a thread waiting on the lock is
woken the moment the writer before it commits, where SQLite's busy handler would have
it sleep in growing steps (up to 100 ms) and try again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

if TYPE_CHECKING:
    from anwang.core.events import Event

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned timezone-aware (SQLite drops zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; attach a UTC offset")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def sqlite_utc_text(value: datetime | None) -> str | None:
    """What :class:`UTCDateTime` binds on SQLite — the instant in UTC as
    ``YYYY-MM-DD HH:MM:SS.ffffff``, SQLAlchemy's storage format there — in a third of
    the time, for statements sent to the driver as they are; a naive time is refused as
    the type refuses it."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored; attach a UTC offset")
    # The offset of a UTC time is "+00:00": the first 26 characters are the format's.
    return value.astimezone(UTC).isoformat(" ", "microseconds")[:26]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class ProcessedEvent(Base):
    """Which consumer has already handled which event: handlers are idempotent on the id."""

    __tablename__ = "processed_events"

    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    processed_at: Mapped[datetime]


class DeadEvent(Base):
    """An event a consumer gave up on: its handler kept failing on the event itself (not
    on the infrastructure) for ``Consumer.max_deliver`` deliveries. Kept whole, with the
    last error, until an operator has fixed the cause and replayed it
    (``anwang events replay``); ``replayed_at`` is set when the replay succeeded."""

    __tablename__ = "dead_events"

    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    #: The event as :meth:`anwang.core.events.Event.to_json` wrote it.
    event: Mapped[str] = mapped_column(Text)
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    failed_at: Mapped[datetime]
    replayed_at: Mapped[datetime | None]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str, *, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 30},
        )
        # Let SQLAlchemy, not the driver, decide when a transaction begins.
        event.listen(engine, "connect", _sqlite_pragmas)

        @event.listens_for(engine, "connect")
        def _no_driver_begin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            mode = "DEFERRED" if conn.get_execution_options().get("readonly") else "IMMEDIATE"
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


AfterCommit = Callable[[], None]

#: How long a write unit of work on SQLite waits for this process's writer lock.
WRITER_WAIT_S = 30.0


class OutboxEntry(Base):
    """An event written in the transaction of the change it announces (see
    :mod:`anwang.core.outbox`); deleted once published."""

    __tablename__ = "outbox"

    event_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(index=True)


def publish_after_commit(session: Session, event: Event) -> None:
    """Queue an event to be published once the session's transaction has committed.

    The event is also written to the ``outbox`` table in this transaction, so that it is
    published even if the process dies or the bus is down right after the commit."""
    session.add(
        OutboxEntry(
            event_id=event.id, name=event.name, body=event.model_dump_json(),
            created_at=event.occurred_at,
        )
    )
    session.info.setdefault("outbox", []).append(event)


def after_commit(session: Session, fn: AfterCommit) -> None:
    session.info.setdefault("after_commit", []).append(fn)


class _WriterLock:
    """A lock for write units of work on SQLite that the thread ending a unit of work may
    release for the thread that began it (a request's unit of work may begin and end on
    different worker threads). A thread that already holds it does not wait for it again
    (a unit of work opened inside another goes on to SQLite, as it would without the
    lock), and one that waits longer than :data:`WRITER_WAIT_S` goes on without it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None

    def acquire(self) -> bool:
        me = threading.get_ident()
        if self._owner == me or not self._lock.acquire(timeout=WRITER_WAIT_S):
            return False
        self._owner = me
        return True

    def release(self) -> None:
        self._owner = None
        self._lock.release()


class Database:
    """Owns the engine and hands out units of work."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        #: Called with the events queued by a committed unit of work, in order, once per
        #: unit of work that queued any (set by the app: ``Outbox.publish``).
        self.publisher: Callable[[list[Event]], None] | None = None
        #: SQLite's one writer, taken in this process before SQLite's own lock.
        self._writer = _WriterLock() if self.dialect == "sqlite" else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self, *, readonly: bool = False) -> Session:
        s = self._sessions()
        if readonly and self.dialect == "sqlite":
            s.connection(execution_options={"readonly": True})
        return s

    @contextmanager
    def unit_of_work(
        self, *, readonly: bool = False, info: dict[str, Any] | None = None
    ) -> Iterator[Session]:
        # Past the wait, SQLite's own busy handling takes over as without the lock.
        held = self._writer is not None and not readonly and self._writer.acquire()
        try:
            session = self.session(readonly=readonly)
            if info:
                session.info.update(info)
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                outbox: list[Event] = session.info.pop("outbox", [])
                hooks: list[AfterCommit] = session.info.pop("after_commit", [])
                session.close()
        finally:
            if held:
                assert self._writer is not None
                self._writer.release()
        # Reached only when the commit succeeded.
        for fn in hooks:
            fn()
        if self.publisher is not None and outbox:
            self.publisher(outbox)

    def dispose(self) -> None:
        self.engine.dispose()
