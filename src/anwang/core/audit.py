"""The append-only, hash-chained audit trail.

Every security-relevant action is one row, written by :func:`record` in the same
transaction as the change it describes. Each row's ``hash`` is

    SHA-256( prev_hash || canonical JSON of the row's content, seq included )

so editing, deleting, inserting or reordering any row breaks the chain at that row, and
removing rows from the end is caught by comparing against the head kept in
``audit_head`` (and, outside the database, against a signed checkpoint from
:func:`export_checkpoint`). Writers serialise on the single ``audit_head`` row: the
``UPDATE ... RETURNING`` that claims the next sequence number takes its row lock (on
SQLite the write lock) until the transaction ends, so the chain never forks.

Rows are never updated or deleted by anwang. On PostgreSQL a trigger refuses UPDATE and
DELETE on ``audit_log`` (see the migration); verification does not rely on it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from sqlalchemy import JSON, BigInteger, Integer, String, Text, insert, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from anwang.core.db import Base
from anwang.core.events import utcnow

GENESIS = "0" * 64


class AuditEntry(Base):
    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str | None] = mapped_column(String(100), index=True)
    actor_role: Mapped[str | None] = mapped_column(String(30))
    action: Mapped[str] = mapped_column(String(120), index=True)
    subject: Mapped[str | None] = mapped_column(String(200), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    case_ref: Mapped[str | None] = mapped_column(String(100), index=True)
    result_count: Mapped[int | None]
    jurisdiction: Mapped[str | None] = mapped_column(String(40))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """One row: the last sequence number and hash. Serialises writers; catches truncation."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))


CONTENT_FIELDS = (
    "seq", "at", "actor", "actor_role", "action", "subject", "reason",
    "case_ref", "result_count", "jurisdiction", "data",
)


def _ts(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def canonical(row: dict[str, Any]) -> bytes:
    """The bytes that are hashed: sorted keys, no whitespace, UTC microsecond times."""
    content = {k: row.get(k) for k in CONTENT_FIELDS}
    content["at"] = _ts(row["at"])
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, row: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(row)).hexdigest()


def _create_head(session: Session) -> None:
    # The head row exists from the first entry on; creating it is race-free (a second
    # creator waits on the first and then does nothing).
    create_head: Any
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        create_head = pg_insert(AuditHead).values(id=1, seq=0, hash=GENESIS)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        create_head = sqlite_insert(AuditHead).values(id=1, seq=0, hash=GENESIS)
    session.execute(create_head.on_conflict_do_nothing())


def take_writer_lock(session: Session) -> None:
    """Take the audit writer lock now; it is held until the transaction ends.

    :func:`record` takes it anyway, at the first entry. A transaction that will write
    entries *and* takes locks of its own between them (the alert raiser's advisory
    locks) calls this first, so that every such transaction takes the audit lock before
    its own: two of them can then never wait for each other in a cycle. Without it, one
    holding the audit lock waits for the other's advisory lock while the other waits for
    the audit lock — a deadlock PostgreSQL breaks by failing one of them.
    """
    _create_head(session)
    session.execute(text("UPDATE audit_head SET seq = seq WHERE id = 1"))


def _claim_next(session: Session) -> tuple[int, str]:
    """Take the writer lock on the head row and claim the next sequence number."""
    _create_head(session)
    row = session.execute(
        text("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
    ).one()
    return int(row[0]), str(row[1])


def record(
    session: Session,
    action: str,
    *,
    actor: str | None = None,
    actor_role: str | None = None,
    subject: str | None = None,
    reason: str | None = None,
    case_ref: str | None = None,
    result_count: int | None = None,
    jurisdiction: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction. ``action`` is a dotted name such as
    ``anwang.auth.login.failed``. ``data`` must be JSON-serialisable and small."""
    seq, prev = _claim_next(session)
    when = (at or utcnow()).astimezone(UTC)
    # Stored precision is microseconds on both databases; hash what will be read back.
    row: dict[str, Any] = {
        "seq": seq, "at": when, "actor": actor, "actor_role": actor_role, "action": action,
        "subject": subject, "reason": reason, "case_ref": case_ref,
        "result_count": result_count, "jurisdiction": jurisdiction,
        "data": json.loads(json.dumps(data, ensure_ascii=False)) if data is not None else None,
    }
    h = chain_hash(prev, row)
    entry = AuditEntry(**row, prev_hash=prev, hash=h)
    session.add(entry)
    session.execute(text("UPDATE audit_head SET hash = :h WHERE id = 1"), {"h": h})
    session.flush()
    return entry


#: The keywords an entry of :func:`record_many` may have (``action`` is required).
ENTRY_FIELDS = frozenset({"action", "actor", "actor_role", "subject", "reason", "case_ref",
                          "result_count", "jurisdiction", "data", "at"})


def record_many(session: Session, entries: Sequence[Mapping[str, Any]]) -> int:
    """Append several entries, in order, in the caller's transaction; returns how many.

    Each entry holds :func:`record`'s keywords. The chain is the same as that many calls
    of :func:`record` would make, but the sequence numbers are claimed with one
    statement, the rows go in with one multi-row insert and the head is moved once: the
    writer lock, held until the transaction ends, is then taken for a few statements,
    not for four per entry. For steps that touch many subjects at once (an escalation
    scan, a batch of device messages raising alarms)."""
    if not entries:
        return 0
    _create_head(session)
    last, prev = session.execute(
        text("UPDATE audit_head SET seq = seq + :n WHERE id = 1 RETURNING seq, hash"),
        {"n": len(entries)},
    ).one()
    seq = int(last) - len(entries)
    prev = str(prev)
    rows: list[dict[str, Any]] = []
    for e in entries:
        unknown = set(e) - ENTRY_FIELDS
        if unknown or "action" not in e:
            raise TypeError(f"an audit entry needs an action and takes only {sorted(ENTRY_FIELDS)}"
                            f" (got {sorted(unknown)})")
        seq += 1
        data = e.get("data")
        row: dict[str, Any] = {
            "seq": seq, "at": (e.get("at") or utcnow()).astimezone(UTC),
            "actor": e.get("actor"), "actor_role": e.get("actor_role"), "action": e["action"],
            "subject": e.get("subject"), "reason": e.get("reason"),
            "case_ref": e.get("case_ref"), "result_count": e.get("result_count"),
            "jurisdiction": e.get("jurisdiction"),
            "data": json.loads(json.dumps(data, ensure_ascii=False)) if data is not None else None,
        }
        row["prev_hash"] = prev
        row["hash"] = prev = chain_hash(prev, row)
        rows.append(row)
    session.execute(insert(AuditEntry), rows)
    session.execute(text("UPDATE audit_head SET hash = :h WHERE id = 1"), {"h": prev})
    return len(rows)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    bad_seq: int | None = None
    problem: str | None = None


def _as_row(e: Any) -> dict[str, Any]:
    return {k: getattr(e, k) for k in CONTENT_FIELDS}


class ChainVerifier:
    """Walks the chain one entry at a time; the whole check is :meth:`feed` on every entry
    in seq order, then :meth:`finish` against the head.

    Its state after entry *k* is just ``(expected next seq, hash of k, count)``: that is what
    lets :func:`verify` stream a log of any length, and lets a check resume from a
    signed checkpoint.
    """

    def __init__(self, *, start_seq: int = 0, start_hash: str = GENESIS) -> None:
        self.prev = start_hash
        self.expected_seq = start_seq + 1
        self.checked = 0
        self.failure: VerifyResult | None = None

    def state(self) -> tuple[int, str, int]:
        return self.expected_seq, self.prev, self.checked

    def restore(self, state: tuple[int, str, int]) -> None:
        self.expected_seq, self.prev, self.checked = state
        self.failure = None

    def _fail(self, bad_seq: int | None, problem: str) -> bool:
        self.failure = VerifyResult(
            False, self.checked, self.expected_seq - 1, self.prev, bad_seq, problem
        )
        return False

    def feed(self, e: Any) -> bool:
        """Check one entry; False (and :attr:`failure` set) at the first bad one."""
        if self.failure is not None:
            return False
        self.checked += 1
        if e.seq != self.expected_seq:
            return self._fail(e.seq, f"expected entry {self.expected_seq}, found {e.seq}")
        if e.prev_hash != self.prev:
            return self._fail(e.seq, "prev_hash does not match the previous entry's hash")
        if chain_hash(self.prev, _as_row(e)) != e.hash:
            return self._fail(e.seq, "content does not match its hash (edited)")
        self.prev = e.hash
        self.expected_seq += 1
        return True

    def finish(self, head: tuple[int, str] | None) -> VerifyResult:
        if self.failure is not None:
            return self.failure
        last = self.expected_seq - 1
        if head is None:
            if self.checked:
                return VerifyResult(False, self.checked, last, self.prev, None,
                                    "audit_head is missing")
            return VerifyResult(True, 0, 0, GENESIS)
        if head != (last, self.prev):
            return VerifyResult(
                False, self.checked, last, self.prev, last + 1 if head[0] > last else head[0],
                f"the head records entry {head[0]} but the log ends at {last} "
                "(truncated, or the head was altered)",
            )
        return VerifyResult(True, self.checked, last, self.prev)


def verify_rows(rows: Iterable[Any], *, head: tuple[int, str] | None) -> VerifyResult:
    """Recompute the chain over ``rows`` (in seq order, from the first entry) and compare
    the end with ``head``."""
    v = ChainVerifier()
    for e in rows:
        if not v.feed(e):
            break
    return v.finish(head)


def iter_entries(session: Session, *, batch: int = 5000) -> Iterator[Any]:
    """Every entry in seq order as plain rows, read in keyset pages: memory stays flat for
    any length of log, nothing enters the session's identity map, and no server-side
    cursor is left open when the reader stops early."""
    table = AuditEntry.__table__
    last = 0
    while True:
        page = session.execute(
            select(*table.c).where(table.c.seq > last).order_by(table.c.seq).limit(batch)
        ).all()
        if not page:
            return
        yield from page
        last = page[-1].seq


def verify(session: Session) -> VerifyResult:
    head = session.get(AuditHead, 1)
    return verify_rows(iter_entries(session), head=(head.seq, head.hash) if head else None)


# --- signed checkpoints -------------------------------------------------------------


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return key


def _checkpoint_message(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def export_checkpoint(session: Session, key: Ed25519PrivateKey) -> dict[str, Any]:
    """A signed statement of the chain's head: anyone holding the public key can later
    prove that entries up to ``seq`` existed with this hash (catches truncation and
    wholesale rewriting, which a chain alone cannot)."""
    result = verify(session)
    body = {
        "type": "anwang.audit.checkpoint",
        "seq": result.head_seq,
        "hash": result.head_hash,
        "intact": result.ok,
        "issued_at": _ts(utcnow()),
    }
    pub = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return {
        **body,
        "public_key": base64.b64encode(pub).decode(),
        "signature": base64.b64encode(key.sign(_checkpoint_message(body))).decode(),
    }


def verify_checkpoint(checkpoint: dict[str, Any]) -> bool:
    body = {k: checkpoint[k] for k in ("type", "seq", "hash", "intact", "issued_at")}
    pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(checkpoint["public_key"]))
    try:
        pub.verify(base64.b64decode(checkpoint["signature"]), _checkpoint_message(body))
    except Exception:  # noqa: BLE001 - any failure is "not valid"
        return False
    return True


def entry_at(session: Session, seq: int) -> AuditEntry | None:
    return session.get(AuditEntry, seq)
