"""SQLite's writers meet at a process-wide lock before SQLite's own (core.db)."""

from __future__ import annotations

import threading

from sqlalchemy import text

from anwang.core.db import Database


def _write(session, value: str) -> None:  # type: ignore[no-untyped-def]
    session.execute(text("INSERT INTO kv (k) VALUES (:v)"), {"v": value})


def _table(db: Database) -> None:
    with db.engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE IF NOT EXISTS kv (k TEXT)")


def test_a_second_writer_starts_only_after_the_first_commits(sqlite_db: Database) -> None:
    _table(sqlite_db)
    inside, release, order = threading.Event(), threading.Event(), []

    def first() -> None:
        with sqlite_db.unit_of_work() as s:
            inside.set()
            release.wait(10)
            order.append("first")
            _write(s, "first")

    def second() -> None:
        with sqlite_db.unit_of_work() as s:
            order.append("second")
            _write(s, "second")

    t1 = threading.Thread(target=first)
    t1.start()
    assert inside.wait(10)
    t2 = threading.Thread(target=second)
    t2.start()
    # The second unit of work waits before its body runs, not at its first statement.
    t2.join(0.5)
    assert t2.is_alive() and order == []
    release.set()
    t1.join(10)
    t2.join(10)
    assert order == ["first", "second"]
    with sqlite_db.unit_of_work(readonly=True) as s:
        assert s.execute(text("SELECT count(*) FROM kv")).scalar_one() == 2


def test_readers_do_not_wait_for_a_writer(sqlite_db: Database) -> None:
    _table(sqlite_db)
    inside, release = threading.Event(), threading.Event()

    def writer() -> None:
        with sqlite_db.unit_of_work() as s:
            _write(s, "w")
            inside.set()
            release.wait(10)

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert inside.wait(10)
        with sqlite_db.unit_of_work(readonly=True) as s:
            # WAL: the reader sees the last committed state while the writer is open.
            assert s.execute(text("SELECT count(*) FROM kv")).scalar_one() == 0
    finally:
        release.set()
        t.join(10)


def test_a_unit_of_work_may_end_on_another_thread(sqlite_db: Database) -> None:
    """A request's unit of work can begin on one worker thread and end on another."""
    _table(sqlite_db)
    uow = sqlite_db.unit_of_work()
    s = uow.__enter__()
    _write(s, "x")
    errors: list[BaseException] = []

    def finish() -> None:
        try:
            uow.__exit__(None, None, None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=finish)
    t.start()
    t.join(10)
    assert errors == []
    # Released: the next writer gets in at once.
    assert sqlite_db._writer is not None and sqlite_db._writer.acquire()
    sqlite_db._writer.release()


def test_a_unit_of_work_inside_another_on_the_same_thread_does_not_wait(
    sqlite_db: Database,
) -> None:
    _table(sqlite_db)
    done = threading.Event()

    def nested() -> None:
        with sqlite_db.unit_of_work() as outer:
            # Nothing written yet by the outer one, so SQLite lets the inner one commit.
            with sqlite_db.unit_of_work() as inner:
                _write(inner, "inner")
            _write(outer, "outer")
        done.set()

    t = threading.Thread(target=nested, daemon=True)
    t.start()
    assert done.wait(10), "the inner unit of work waited for the lock its own thread held"
    with sqlite_db.unit_of_work(readonly=True) as s:
        assert s.execute(text("SELECT count(*) FROM kv")).scalar_one() == 2


def test_postgresql_takes_no_process_lock() -> None:
    db = Database("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        assert db._writer is None
    finally:
        db.dispose()
