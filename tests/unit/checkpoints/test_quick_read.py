"""The fast path of read validation (``schemas.quick_read``) against the model it stands
in for (``ReadIn``): it never accepts what the model refuses, gives the model's values
when it accepts, and takes the plain reads devices send."""

from __future__ import annotations

import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from anwang.checkpoints import reads, schemas
from anwang.checkpoints.reads import CheckpointInfo, validate_reads
from anwang.checkpoints.schemas import ReadFields, ReadIn, quick_read

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
CPS = {"C1": CheckpointInfo("One", "police_checkpoint", 31.7, 119.9, "3201"),
       "OLD": CheckpointInfo("Old", "road", 31.7, 119.9, "3201")}
ACTIVE = {"C1": True, "OLD": False}

# --- values, valid and not -------------------------------------------------------------

INSTANTS = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
OFFSETS = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59)


@st.composite
def rfc3339(draw: st.DrawFn) -> str:
    """Date-times as devices write them, and the near misses: other separators, lower
    case, long or no fractions, leap seconds, hours 24+, no offset, days that do not
    exist."""
    at = draw(INSTANTS)
    sep = draw(st.sampled_from("TTTt "))
    second = draw(st.sampled_from([f"{at.second:02d}"] * 4 + ["60", "61"]))
    digits = draw(st.integers(min_value=0, max_value=9))
    frac = "" if digits == 0 else "." + draw(st.text("0123456789", min_size=digits,
                                                     max_size=digits))
    minutes = draw(OFFSETS)
    sign = "+" if minutes >= 0 else "-"
    offset = draw(st.sampled_from([
        "Z", "Z", "z", "", f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}",
        f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}", "+24:00", "+08:60",
    ]))
    day = draw(st.sampled_from([f"{at.day:02d}"] * 5 + ["30", "31", "00"]))
    hour = draw(st.sampled_from([f"{at.hour:02d}"] * 5 + ["24"]))
    text = (f"{at.year:04d}-{at.month:02d}-{day}{sep}{hour}:{at.minute:02d}:{second}"
            f"{frac}{offset}")
    return draw(st.sampled_from([text, text, text, text + "\n", " " + text]))


def anything() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
                     st.lists(st.integers(), max_size=2))


IDS = st.one_of(st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True),
                st.sampled_from(["", "a b", "x" * 65, "id\n", "ｉｄ"]), anything())
CODES = st.one_of(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}", fullmatch=True),
                  st.sampled_from(["C1", "-C1", "C1\n", "C" * 41, "Ｃ1"]), anything())
PLATES = st.one_of(st.sampled_from(["苏D12345", " 苏D 12345 ", "x" * 64, "x" * 65, ""]),
                   st.text(max_size=70), anything())
COLOURS = st.one_of(st.sampled_from([c.value for c in schemas.PlateColor]),
                    st.sampled_from(["BLUE", "blue ", "red"]), anything())
CONFIDENCES = st.one_of(st.floats(min_value=-0.5, max_value=1.5), st.floats(),
                        st.integers(min_value=-2, max_value=2),
                        st.sampled_from([10**400, True, False, "0.5", float("nan")]),
                        anything())
LANES = st.one_of(st.sampled_from([-1, 0, 99, 100, 2**64, True, 2.0, "2"]),
                  st.integers(min_value=-3, max_value=120), anything())
DIRECTIONS = st.one_of(st.sampled_from(["in", "out", "IN", " in", "up"]), anything())
SHORT = st.one_of(st.sampled_from([" car", "car ", "car\u3000", "\u001ccar", "\u0085car",
                                   "x" * 40, "x" * 41, "", None]),
                  st.text(max_size=42), st.integers())
VEHICLES = st.one_of(
    st.fixed_dictionaries({"type": SHORT}, optional={"colour": SHORT, "make": SHORT}),
    st.dictionaries(st.sampled_from(["type", "colour", "make", "model"]), SHORT, max_size=4),
    anything(),
)
IMAGE_REFS = st.one_of(st.text(max_size=10), st.sampled_from(["x" * 500, "x" * 501]),
                       anything())

#: Reads as devices send them: every value plain and valid.
PLAIN = st.fixed_dictionaries(
    {
        "checkpoint": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}", fullmatch=True),
        "captured_at": st.builds(
            lambda at, m: at.replace(tzinfo=timezone(timedelta(minutes=m))).isoformat()
            .replace("+00:00", "Z"),
            st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
            st.integers(min_value=-14 * 60, max_value=14 * 60)),
        "plate": st.text(max_size=64),
        "direction": st.sampled_from(["in", "out"]),
    },
    optional={
        "id": st.none() | st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True),
        "plate_color": st.none() | st.sampled_from([c.value for c in schemas.PlateColor]),
        "confidence": st.none() | st.floats(min_value=0, max_value=1)
        | st.integers(min_value=0, max_value=1),
        "lane": st.none() | st.integers(min_value=0, max_value=99) | st.sampled_from([0, 99]),
        "vehicle": st.none() | st.dictionaries(
            st.sampled_from(["type", "colour", "make"]),
            st.none() | st.text(max_size=40).filter(lambda s: s == s.strip())),
        "image_ref": st.none() | st.text(max_size=500) | st.just("x" * 500),
    },
)


FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "id": IDS, "checkpoint": CODES, "captured_at": st.one_of(rfc3339(), anything()),
    "plate": PLATES, "plate_color": COLOURS, "confidence": CONFIDENCES, "lane": LANES,
    "direction": DIRECTIONS, "vehicle": VEHICLES, "image_ref": IMAGE_REFS,
    "speed": anything(),
}


@st.composite
def near_reads(draw: st.DrawFn) -> dict[str, Any]:
    """A plain read with a field or two changed to a value from anywhere (often one just
    outside the rules) or left out."""
    item = dict(draw(PLAIN))
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=2)):
        if draw(st.integers(min_value=0, max_value=5)) == 0:
            item.pop(name, None)
        else:
            item[name] = draw(FIELDS[name])
    return item


READS = near_reads()


def by_model(item: dict[str, Any]) -> ReadFields | None:
    try:
        return ReadFields.of(ReadIn.model_validate(item))
    except ValidationError:
        return None


def same(fast: ReadFields, model: ReadFields) -> None:
    # The fast path also writes the time as read ids are derived from it.
    assert fast.instant == schemas.utc_instant(model.captured_at)
    fast = fast._replace(instant=None)
    assert fast == model
    # Equal and written the same: UTC, and the vehicle's fields in the model's order.
    assert fast.captured_at.utcoffset() == timedelta(0)
    assert fast.captured_at.isoformat() == model.captured_at.isoformat()
    assert list((fast.vehicle or {}).items()) == list((model.vehicle or {}).items())
    assert [type(v) for v in fast] == [type(v) for v in model]


@settings(max_examples=2500)
@given(READS)
def test_the_fast_path_accepts_nothing_the_model_refuses_and_agrees_on_values(
    item: dict[str, Any],
) -> None:
    fast = quick_read(item)
    if fast is None:
        return  # the model decides, as without the fast path
    model = by_model(item)
    assert model is not None, f"fast path accepted what the model refuses: {item!r}"
    same(fast, model)


@settings(max_examples=500)
@given(PLAIN)
def test_plain_reads_take_the_fast_path(item: dict[str, Any]) -> None:
    fast = quick_read(item)
    assert fast is not None
    model = by_model(item)
    assert model is not None
    same(fast, model)


@settings(max_examples=300)
@given(st.lists(st.one_of(READS, PLAIN), max_size=6))
def test_a_batch_is_judged_the_same_with_and_without_the_fast_path(
    batch: list[dict[str, Any]],
) -> None:
    for item in batch:  # some of them on known checkpoints, in the window
        if isinstance(item.get("checkpoint"), str) and len(item["checkpoint"]) % 2:
            item["checkpoint"] = "C1"
        if isinstance(item.get("captured_at"), str) and len(item["captured_at"]) % 3 == 0:
            item["captured_at"] = "2026-11-28T15:59:00.25+08:00"
    kwargs: dict[str, Any] = {"checkpoints": CPS, "active": ACTIVE, "now": NOW,
                              "retention": timedelta(hours=48)}
    fast = validate_reads(batch, **kwargs)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reads, "quick_reads", lambda items, **_: [None] * len(items))
        slow = validate_reads(batch, **kwargs)
    assert fast == slow


def test_values_that_once_overflowed_are_refused_with_their_codes() -> None:
    base = {"checkpoint": "C1", "captured_at": "2026-11-28T15:59:00+08:00", "plate": "苏D12345",
            "direction": "in"}
    cases = [({"confidence": 10**400}, "confidence_out_of_range"),
             ({"captured_at": "0001-01-01T00:00:00+01:00"}, "invalid_captured_at"),
             ({"captured_at": "9999-12-31T23:59:59-01:00"}, "invalid_captured_at")]
    for change, code in cases:
        item = {**base, **change}
        assert quick_read(item) is None
        _, rejected = validate_reads([item], checkpoints=CPS, active=ACTIVE, now=NOW,
                                     retention=timedelta(hours=48))
        assert [r.code for r in rejected] == [code]


def test_the_facts_of_a_batch_carry_each_field_under_its_name() -> None:
    read = reads.ValidRead(
        id="r1", checkpoint="C1", captured_at=NOW, plate="苏D12345", plate_kind="ordinary",
        plate_color="blue", confidence=0.5, lane=3, direction="in",
        vehicle={"type": "car"}, image_ref="s3://x",
    )
    b = reads.ReadBatch(received_at=NOW, source="t", checkpoints=CPS, reads=[read])
    assert b.facts() == [reads.ReadFacts(
        read_id="r1", checkpoint_code="C1", checkpoint_name="One",
        checkpoint_kind="police_checkpoint", direction="in", lane=3, captured_at=NOW,
        plate="苏D12345", plate_color="blue", confidence=0.5, lat=31.7, lon=119.9,
        jurisdiction_code="3201", vehicle={"type": "car"}, image_ref="s3://x",
    )]


@settings(max_examples=300)
@given(st.lists(st.one_of(PLAIN, PLAIN, READS, anything()), max_size=8))
def test_a_batch_gets_what_each_of_its_reads_gets_alone(batch: list[Any]) -> None:
    # One read that is not plain sends the batch read by read; the others keep the
    # fast path.
    assert schemas.quick_reads(batch) == [quick_read(item) for item in batch]


@settings(max_examples=200)
@given(st.lists(PLAIN, min_size=1, max_size=5), st.sets(st.sampled_from(["C1", "C2"])))
def test_reads_through_codes_not_known_are_left_to_the_model(
    batch: list[dict[str, Any]], known: set[str],
) -> None:
    for n, item in enumerate(batch):
        item["checkpoint"] = ["C1", "C2", "C3"][n % 3]
    got = schemas.quick_reads(batch, checkpoints=known)
    for item, fast in zip(batch, got, strict=True):
        assert (fast is not None) == (item["checkpoint"] in known)


def test_the_time_of_a_read_is_written_once_per_second_and_offset() -> None:
    """Reads of one second share its UTC text; each keeps its own fraction, and a day
    that does not exist is left to the model, in a batch as alone."""
    base = {"checkpoint": "C1", "plate": "苏D12345", "direction": "in"}
    times = ["2026-11-28T16:00:05+08:00", "2026-11-28T16:00:05.5+08:00",
             "2026-11-28T16:00:05.000001+08:00", "2026-11-28T08:00:05.25Z",
             "2026-02-30T08:00:05Z", "2026-12-31T23:59:59.999999-10:30"]
    got = schemas.quick_reads([{**base, "captured_at": t} for t in times])
    assert [g.instant if g else None for g in got] == [
        "2026-11-28T08:00:05.000000Z", "2026-11-28T08:00:05.500000Z",
        "2026-11-28T08:00:05.000001Z", "2026-11-28T08:00:05.250000Z", None,
        "2027-01-01T10:29:59.999999Z"]
    for fast in got:
        if fast is not None:
            assert fast.captured_at.tzinfo is UTC
            assert fast.instant == schemas.utc_instant(fast.captured_at)


def test_the_fast_path_knows_every_plate_colour() -> None:
    assert set(typing.get_args(schemas._Colour)) == {c.value for c in schemas.PlateColor}
