"""The audit chain detects every kind of tampering, on every row of a long log."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text, update

from anwang.core import audit
from anwang.core.audit import AuditEntry, AuditHead, ChainVerifier, verify, verify_rows
from anwang.core.db import Base, Database

N_ROWS = 2000


@dataclass
class Row:
    """A detached copy of an entry, so mutations need no database round trip."""

    seq: int
    at: Any
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


def _fill(db: Database, n: int) -> None:
    rnd = random.Random(42)
    actions = ["anwang.auth.login.succeeded", "anwang.auth.login.failed",
               "anwang.checkpoints.reads.searched", "anwang.watchlist.entry.approved"]
    entries = [
        {"action": rnd.choice(actions), "actor": f"user{rnd.randrange(20)}",
         "actor_role": "analyst", "subject": f"subject-{i}",
         "reason": rnd.choice([None, "case work"]), "case_ref": rnd.choice([None, "A2026-00017"]),
         "result_count": rnd.choice([None, rnd.randrange(100)]),
         "data": {"i": i, "terms": {"plate": "苏D12345"}}}
        for i in range(n)
    ]
    # A few one by one, the rest together: the chain is the same either way
    # (test_record_many_makes_the_chain_that_single_records_make).
    with db.unit_of_work() as s:
        for e in entries[:10]:
            audit.record(s, **e)
        audit.record_many(s, entries[10:])


def _rows(db: Database) -> tuple[list[Row], tuple[int, str]]:
    with db.unit_of_work(readonly=True) as s:
        rows = [
            Row(**{k: getattr(e, k) for k in Row.__dataclass_fields__})
            for e in s.scalars(select(AuditEntry).order_by(AuditEntry.seq))
        ]
        head = s.get(AuditHead, 1)
        assert head is not None
        return rows, (head.seq, head.hash)


@pytest.fixture
def log(db: Database) -> tuple[Database, list[Row], tuple[int, str]]:
    _fill(db, N_ROWS)
    rows, head = _rows(db)
    return db, rows, head


def _edit(row: Row, i: int) -> None:
    field = ["actor", "action", "subject", "reason", "case_ref", "result_count", "data",
             "at", "actor_role", "jurisdiction"][i % 10]
    if field == "result_count":
        row.result_count = (row.result_count or 0) + 1
    elif field == "data":
        row.data = {**(row.data or {}), "i": -1}
    elif field == "at":
        row.at = row.at + timedelta(microseconds=1)
    else:
        setattr(row, field, (getattr(row, field) or "") + "x")


class Exhaustive:
    """Runs the verifier on a log mutated at row ``i``, for every ``i``, in linear time.

    The verifier's state after the unmutated prefix ``rows[:i]`` is snapshotted during one
    pass over the intact log; a mutated log is then checked by restoring that snapshot
    and feeding the mutated suffix. This is exactly what a run from the first entry does
    (the prefix is the same), without repeating the prefix n times. A sample is also
    re-checked from the first entry with :func:`verify_rows` to show the equivalence.
    """

    def __init__(self, rows: list[Row], head: tuple[int, str]) -> None:
        self.rows, self.head = rows, head
        v = ChainVerifier()
        self.states = []
        for r in rows:
            self.states.append(v.state())
            assert v.feed(r)
        self.states.append(v.state())

    def check(self, i: int, suffix: list[Row]) -> audit.VerifyResult:
        v = ChainVerifier()
        v.restore(self.states[i])
        for r in suffix:
            if not v.feed(r):
                break
        return v.finish(self.head)

    def sample(self, k: int = 25) -> list[int]:
        return random.Random(7).sample(range(len(self.rows)), k)


def test_intact_log_verifies(log: tuple[Database, list[Row], tuple[int, str]]) -> None:
    db, rows, head = log
    assert verify_rows(rows, head=head).ok
    with db.unit_of_work(readonly=True) as s:
        r = verify(s)
    assert r.ok and r.checked == N_ROWS and r.head_seq == N_ROWS


def test_every_kind_of_mutation_on_every_row_is_detected(
    log: tuple[Database, list[Row], tuple[int, str]],
) -> None:
    _, rows, head = log
    ex = Exhaustive(rows, head)
    n = len(rows)
    for i in range(n):
        # edit a field
        edited = copy.copy(rows[i])
        _edit(edited, i)
        r = ex.check(i, [edited, *rows[i + 1 :]])
        assert not r.ok and r.bad_seq == rows[i].seq, ("edit", i, r)
        # edit and recompute that row's own hash: caught at the next link (or the head)
        forged = copy.copy(edited)
        forged.hash = audit.chain_hash(forged.prev_hash, vars(forged))
        r = ex.check(i, [forged, *rows[i + 1 :]])
        assert not r.ok, ("rehash", i)
        if i + 1 < n:
            assert r.bad_seq == rows[i + 1].seq, ("rehash", i, r)
        # delete
        assert not ex.check(i, rows[i + 1 :]).ok, ("delete", i)
        # insert a copy before it
        extra = copy.copy(rows[i])
        extra.subject = "inserted"
        assert not ex.check(i, [extra, *rows[i:]]).ok, ("insert", i)
        # swap with the next
        if i + 1 < n:
            assert not ex.check(i, [rows[i + 1], rows[i], *rows[i + 2 :]]).ok, ("swap", i)
        # truncate the tail from here
        assert not ex.check(i, []).ok, ("truncate", i)


def test_resumed_checks_agree_with_full_runs(
    log: tuple[Database, list[Row], tuple[int, str]],
) -> None:
    _, rows, head = log
    ex = Exhaustive(rows, head)
    for i in ex.sample():
        edited = copy.copy(rows[i])
        _edit(edited, i)
        mutated = [*rows[:i], edited, *rows[i + 1 :]]
        assert verify_rows(mutated, head=head) == ex.check(i, mutated[i:])
        assert verify_rows(rows[:i], head=head) == ex.check(i, [])
        deleted = rows[:i] + rows[i + 1 :]
        assert verify_rows(deleted, head=head) == ex.check(i, deleted[i:])


def test_real_sql_tampering_is_detected(db: Database) -> None:
    """Tamper through SQL, as someone with database access would."""
    _fill(db, 50)

    def check() -> audit.VerifyResult:
        with db.unit_of_work(readonly=True) as s:
            return verify(s)

    assert check().ok
    with db.engine.begin() as c:
        c.execute(update(AuditEntry).where(AuditEntry.seq == 17).values(actor="someone-else"))
    r = check()
    assert not r.ok and r.bad_seq == 17
    with db.engine.begin() as c:
        c.execute(update(AuditEntry).where(AuditEntry.seq == 17).values(actor=None))
        c.execute(delete(AuditEntry).where(AuditEntry.seq == 17))
    assert not check().ok
    with db.engine.begin() as c:
        c.execute(delete(AuditEntry).where(AuditEntry.seq > 10))
        c.execute(text("UPDATE audit_head SET seq = 10"))
    r = check()
    assert not r.ok  # head hash no longer matches entry 10


@pytest.mark.parametrize("together", [False, True], ids=["one-by-one", "with-record-many"])
def test_concurrent_writers_never_fork_the_chain(db: Database, together: bool) -> None:
    """4 writers, 20 entries each; with ``together``, two of them append theirs two at a
    time with ``record_many``."""
    from concurrent.futures import ThreadPoolExecutor

    def write(k: int) -> None:
        if together and k % 2:
            for j in range(10):
                with db.unit_of_work() as s:
                    audit.record_many(s, [{"action": "anwang.test.items.written",
                                           "actor": f"w{k}", "data": {"j": j, "n": n}}
                                          for n in range(2)])
            return
        for j in range(20):
            with db.unit_of_work() as s:
                audit.record(s, "anwang.test.item.written", actor=f"w{k}", data={"j": j})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(4)))
    with db.unit_of_work(readonly=True) as s:
        r = verify(s)
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 80
    assert r.ok and r.checked == 80


def test_rolled_back_change_leaves_no_audit_row(db: Database) -> None:
    with pytest.raises(RuntimeError), db.unit_of_work() as s:
        audit.record(s, "anwang.test.item.written", actor="a")
        raise RuntimeError("the change failed")
    with db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 0
        assert verify(s).ok


def test_signed_checkpoint_roundtrip(db: Database, tmp_path: Any) -> None:
    _fill(db, 5)
    key = audit.load_or_create_signing_key(tmp_path / "k.pem")
    with db.unit_of_work(readonly=True) as s:
        cp = audit.export_checkpoint(s, key)
    assert cp["seq"] == 5 and cp["intact"] is True
    assert audit.verify_checkpoint(cp)
    forged = {**cp, "seq": 4}
    assert not audit.verify_checkpoint(forged)
    # The same key file is reused, not replaced.
    again = audit.load_or_create_signing_key(tmp_path / "k.pem")
    assert again.public_key().public_bytes_raw() == key.public_key().public_bytes_raw()


def _content(s: Any) -> list[tuple[Any, ...]]:
    return [(e.seq, e.action, e.actor, e.subject, e.data, e.prev_hash, e.hash)
            for e in s.scalars(select(AuditEntry).order_by(AuditEntry.seq))]


def test_record_many_makes_the_chain_that_single_records_make(db: Database, tmp_path: Any
                                                              ) -> None:
    """The same entries, once one by one and once together (between single ones), give
    the same rows — sequence numbers, links and hashes — on a second database."""
    at = audit.utcnow()
    entries = [{"action": "anwang.test.alarm.escalated", "actor": "anwang", "subject": f"a{i}",
                "data": {"level": i % 3, "名": "值"}, "at": at + timedelta(microseconds=i)}
               for i in range(25)]
    other = Database(f"sqlite:///{tmp_path / 'single.db'}")
    Base.metadata.create_all(other.engine)
    for target, together in ((db, True), (other, False)):
        with target.unit_of_work() as s:
            audit.record(s, "anwang.test.first", actor="x", at=at)
            if together:
                assert audit.record_many(s, entries) == 25
            else:
                for e in entries:
                    audit.record(s, **e)
        with target.unit_of_work() as s:
            audit.record(s, "anwang.test.last", actor="y", at=at)
    with db.unit_of_work(readonly=True) as s, other.unit_of_work(readonly=True) as o:
        assert verify(s).ok and verify(s).checked == 27
        assert _content(s) == _content(o)
        assert [e[0] for e in _content(s)] == list(range(1, 28))
    other.dispose()


def test_record_many_refuses_a_bad_entry_and_writes_nothing(db: Database) -> None:
    with pytest.raises(TypeError, match="action"), db.unit_of_work() as s:
        audit.record_many(s, [{"action": "anwang.test.ok"}, {"actor": "no action"}])
    with pytest.raises(TypeError, match="colour"), db.unit_of_work() as s:
        audit.record_many(s, [{"action": "anwang.test.ok", "colour": "red"}])
    with db.unit_of_work() as s:
        assert audit.record_many(s, []) == 0
    with db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 0
        assert verify(s).ok
