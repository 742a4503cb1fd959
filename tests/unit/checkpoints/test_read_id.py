"""The id derived for a read sent without one: deterministic, and the same for the same
read however it is written."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from anwang.checkpoints.reads import READ_NAMESPACE, read_id

PLATES = st.sampled_from(
    ["苏D12345", "苏DA1234", "京A1234警", "苏DD12345", "粤Z1234港", "使224009"]
)
CODES = st.from_regex(r"[A-Z][A-Z0-9-]{0,12}", fullmatch=True)
INSTANTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
LANES = st.none() | st.integers(min_value=0, max_value=99)
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)


@given(code=CODES, at=INSTANTS, plate=PLATES, lane=LANES)
def test_the_same_read_always_gets_the_same_uuid5(
    code: str, at: datetime, plate: str, lane: int | None
) -> None:
    first = read_id(checkpoint=code, captured_at=at, plate=plate, lane=lane)
    assert first == read_id(checkpoint=code, captured_at=at, plate=plate, lane=lane)
    parsed = uuid.UUID(first)
    assert parsed.version == 5 and str(parsed) == first


@given(code=CODES, at=INSTANTS, plate=PLATES, lane=LANES, tz=OFFSETS)
def test_the_offset_a_time_is_written_in_does_not_matter(
    code: str, at: datetime, plate: str, lane: int | None, tz: timezone
) -> None:
    assert read_id(checkpoint=code, captured_at=at, plate=plate, lane=lane) == read_id(
        checkpoint=code, captured_at=at.astimezone(tz), plate=plate, lane=lane
    )


@given(at=INSTANTS, lane=LANES)
def test_the_plate_is_normalised_first(at: datetime, lane: int | None) -> None:
    plain = read_id(checkpoint="C1", captured_at=at, plate="苏D12345", lane=lane)
    for spelling in ("苏Ｄ１２３４５", "苏d 123-45", "苏D.12345", " 苏D1234５ "):
        assert read_id(checkpoint="C1", captured_at=at, plate=spelling, lane=lane) == plain


@given(code=CODES, at=INSTANTS, plate=PLATES, lane=LANES)
def test_each_part_changes_the_id(
    code: str, at: datetime, plate: str, lane: int | None
) -> None:
    base = read_id(checkpoint=code, captured_at=at, plate=plate, lane=lane)
    assert read_id(checkpoint=code + "X", captured_at=at, plate=plate, lane=lane) != base
    assert read_id(checkpoint=code, captured_at=at + timedelta(microseconds=1), plate=plate,
                   lane=lane) != base
    assert read_id(checkpoint=code, captured_at=at, plate=plate + "1", lane=lane) != base
    other_lane = 0 if lane is None else None
    assert read_id(checkpoint=code, captured_at=at, plate=plate, lane=other_lane) != base


def test_parts_cannot_run_into_each_other() -> None:
    at = datetime(2026, 11, 28, tzinfo=UTC)
    # Lane 1 with checkpoint "C" must differ from lane None with a plate ending in 1.
    assert read_id(checkpoint="C", captured_at=at, plate="苏D1234", lane=1) != read_id(
        checkpoint="C", captured_at=at, plate="苏D12341", lane=None
    )


def test_the_namespace_is_fixed() -> None:
    """Changing it would give every read a new id and break de-duplication across an
    upgrade."""
    expected = uuid.uuid5(uuid.NAMESPACE_URL, "https://anwang.invalid/checkpoints/plate-read")
    assert expected == READ_NAMESPACE
    at = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    assert read_id(checkpoint="C1", captured_at=at, plate="苏D12345", lane=2) == str(
        uuid.uuid5(READ_NAMESPACE, "C1\x1f2026-11-28T08:00:00.000000Z\x1f苏D12345\x1f2")
    )


@given(code=CODES, at=INSTANTS, plate=PLATES, lane=LANES)
def test_the_id_is_the_standard_uuid5_of_the_canonical_name(
    code: str, at: datetime, plate: str, lane: int | None
) -> None:
    name = "\x1f".join((code, at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), plate,
                        "" if lane is None else str(lane)))
    assert read_id(checkpoint=code, captured_at=at, plate=plate, lane=lane) == str(
        uuid.uuid5(READ_NAMESPACE, name))
