"""Statements sent to SQLite's driver as they are (the plate-read insert, the read
locations) bind their times with ``core.db.sqlite_utc_text``: the text must be what
SQLAlchemy's own ``UTCDateTime`` binding writes, for every instant and offset, and a
naive time must be refused as that type refuses it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from anwang.checkpoints import reads
from anwang.core.db import UTCDateTime, sqlite_utc_text

DIALECT = sqlite.dialect()
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
# Years whose UTC instant stays within what datetime can hold, whatever the offset.
AWARE = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                     timezones=OFFSETS)


def sqlalchemy_bind(value: datetime | None) -> object:
    process = UTCDateTime().dialect_impl(DIALECT).bind_processor(DIALECT)
    assert process is not None
    return process(value)


@given(AWARE)
def test_the_text_is_sqlalchemys(value: datetime) -> None:
    assert sqlite_utc_text(value) == sqlalchemy_bind(value)


def test_the_insert_uses_it_for_both_times_and_none_stays_none() -> None:
    procs = reads._processors(DIALECT)
    assert procs["captured_at"] is sqlite_utc_text
    assert procs["received_at"] is sqlite_utc_text
    assert sqlite_utc_text(None) is None


def test_a_naive_time_is_refused_as_sqlalchemy_refuses_it() -> None:
    naive = datetime(2026, 11, 28, 8, 0)
    with pytest.raises(ValueError, match="naive"):
        sqlite_utc_text(naive)
    with pytest.raises(ValueError, match="naive"):
        sqlalchemy_bind(naive)
