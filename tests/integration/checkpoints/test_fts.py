"""SQLite's trigram index of plates (``plate_reads_fts``): kept in step by its triggers,
and a partial-plate search through it finds exactly what ``LIKE`` over the table finds."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, delete, insert, select, text, update
from sqlalchemy.orm import Session

from anwang.checkpoints import storage
from anwang.checkpoints.models import Checkpoint, PlateRead
from anwang.checkpoints.search import plate_clause

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
#: A small alphabet, so that random plates share runs and patterns find something.
ALPHABET = "苏京DE0123"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """Only the tables the search needs, created as ``create_all`` does (with the index
    and its triggers); shared by the examples of a module."""
    path: Path = tmp_path_factory.mktemp("fts") / "fts.db"
    eng = create_engine(f"sqlite:///{path}")
    Checkpoint.__table__.create(eng)
    PlateRead.__table__.create(eng)
    yield eng
    eng.dispose()


def row(i: int, plate: str) -> dict[str, object]:
    return {
        "id": f"r{i}", "checkpoint_code": "C1", "captured_at": T0 + timedelta(seconds=i),
        "received_at": T0, "plate": plate, "plate_kind": None, "plate_color": None,
        "confidence": None, "lane": None, "direction": "in", "vehicle": None,
        "image_ref": None, "lat": 0.0, "lon": 0.0, "hit": False, "jurisdiction_code": None,
    }


def found(session: Session, pattern: str) -> set[str]:
    return set(session.scalars(select(PlateRead.id).where(plate_clause(session, pattern))))


def by_like(session: Session, pattern: str) -> set[str]:
    like = pattern.replace("?", "_").replace("*", "%")
    return set(session.scalars(select(PlateRead.id).where(PlateRead.plate.like(like))))


def by_regex(plates: list[str], pattern: str) -> set[str]:
    rx = re.compile("".join("." if c == "?" else ".*" if c == "*" else re.escape(c)
                            for c in pattern))
    return {f"r{i}" for i, p in enumerate(plates) if rx.fullmatch(p)}


plates_st = st.lists(st.text(ALPHABET, min_size=3, max_size=8), min_size=1, max_size=40)
changes_st = st.lists(
    st.tuples(st.integers(0, 39), st.text(ALPHABET, min_size=3, max_size=8)), max_size=5)


@st.composite
def pattern_of(draw: st.DrawFn, plates: list[str]) -> str:
    """A pattern made from one of ``plates`` (some characters turned into ``?``, some
    runs into ``*``), or drawn freely."""
    if draw(st.booleans()):
        base = draw(st.sampled_from(plates))
        out = []
        i = 0
        while i < len(base):
            choice = draw(st.sampled_from("kkkq*"))
            if choice == "q":
                out.append("?")
                i += 1
            elif choice == "*":
                out.append("*")
                i += draw(st.integers(0, 3))
            else:
                out.append(base[i])
                i += 1
        pattern = re.sub(r"\*+", "*", "".join(out))
    else:
        pattern = draw(st.text(ALPHABET + "?*", min_size=1, max_size=8))
    if not any(c not in "?*" for c in pattern):
        pattern += "D"
    return pattern


@settings(max_examples=200, deadline=None)
@given(plates=plates_st, changes=changes_st, data=st.data())
def test_the_trigram_index_finds_what_like_finds(
    engine: Engine, plates: list[str], changes: list[tuple[int, str]], data: st.DataObject
) -> None:
    with Session(engine) as s, s.begin():
        s.execute(delete(PlateRead))
        s.execute(insert(PlateRead), [row(i, p) for i, p in enumerate(plates)])
        # Updates and deletes go through the triggers too.
        for i, plate in changes:
            if i < len(plates):
                s.execute(update(PlateRead).where(PlateRead.id == f"r{i}").values(plate=plate))
                plates[i] = plate
        if len(plates) > 3:
            s.execute(delete(PlateRead).where(PlateRead.id == "r0"))
            plates[0] = "\x00"  # matches no pattern
    pattern = data.draw(pattern_of([p for p in plates if p != "\x00"] or ["D12"]))
    with Session(engine) as s:
        assert found(s, pattern) == by_like(s, pattern) == by_regex(plates, pattern)


def test_a_pattern_with_a_three_character_run_uses_the_index(engine: Engine) -> None:
    with Session(engine) as s:
        stmt = select(PlateRead.id).where(plate_clause(s, "*D12?4*"))
        sql = str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))
        assert "plate_reads_fts MATCH" in sql
        plan = " ".join(r[3] for r in s.execute(text("EXPLAIN QUERY PLAN " + sql)))
        assert "plate_reads_fts" in plan
        # No run of three, but one '?' makes one: each character in its place, OR'ed.
        expanded = str(select(PlateRead.id).where(plate_clause(s, "*D?2*"))
                       .compile(engine, compile_kwargs={"literal_binds": True}))
        assert '"DA2" OR "DB2"' in expanded
        plan = " ".join(r[3] for r in s.execute(text("EXPLAIN QUERY PLAN " + expanded)))
        assert "plate_reads_fts" in plan
        # ... in the pattern's fixed start: prefix ranges of the plate index, OR'ed.
        ranges = str(select(PlateRead.id).where(plate_clause(s, "苏D?2*"))
                     .compile(engine, compile_kwargs={"literal_binds": True}))
        assert "plate_reads.plate >= '苏DA2' AND plate_reads.plate < '苏DA3'" in ranges
        plan = " ".join(r[3] for r in s.execute(text("EXPLAIN QUERY PLAN " + ranges)))
        assert "MULTI-INDEX OR" in plan and "ix_plate_reads_plate_captured_at" in plan
        short = str(select(PlateRead.id).where(plate_clause(s, "苏D*2?"))
                    .compile(engine, compile_kwargs={"literal_binds": True}))
        assert "MATCH" not in short  # no run of three, none to make: prefix range and LIKE


def test_fts_queries() -> None:
    assert storage.fts_query("苏D12?45") == '"苏D12"'
    assert storage.fts_query("*D12*345") == '"D12" AND "345"'
    assert storage.fts_query("苏D?2*5") is None


def test_rebuild_restores_an_index_that_fell_out_of_step(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        s.execute(delete(PlateRead))
        s.execute(insert(PlateRead), [row(1, "苏D12345"), row(2, "京E12399")])
        assert found(s, "*123*") == {"r1", "r2"}
        s.execute(text("INSERT INTO plate_reads_fts(plate_reads_fts) VALUES ('delete-all')"))
        assert found(s, "*123*") == set()  # what a VACUUM that renumbered rows could do
        storage.rebuild_fts(s)
        assert found(s, "*123*") == {"r1", "r2"}
