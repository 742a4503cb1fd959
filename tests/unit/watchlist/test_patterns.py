"""How entries' patterns and imported lists are read (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anwang.checkpoints import plates
from anwang.core.errors import ValidationFailed
from anwang.watchlist import service as wl
from anwang.watchlist.matcher import Entry, WatchIndex

NOW = datetime(2026, 11, 28, tzinfo=UTC)


@pytest.mark.parametrize(("raw", "stored", "kind"), [
    ("苏D12345", "苏D12345", "exact"),
    ("苏 d·12345", "苏D12345", "exact"),
    ("苏DI2345", "苏D12345", "exact"),  # I is never issued in a serial: it is a 1
    ("苏D？23＊", "苏D?23*", "partial"),
    ("苏d?o2**", "苏D?02*", "partial"),
    ("*12345", "*12345", "partial"),
])
def test_patterns_are_stored_as_reads_are_normalised(raw: str, stored: str, kind: str) -> None:
    assert wl.normalise_pattern(raw) == (stored, wl.PatternKind(kind))


@pytest.mark.parametrize("raw", ["", "   ", "苏D12", "hello", "??", "苏*", "苏D?#23"])
def test_bad_patterns_are_refused_on_the_pattern_field(raw: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        wl.normalise_pattern(raw)
    assert exc.value.errors[0].field == "pattern"


SERIAL = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
plate_st = st.tuples(st.sampled_from("苏京沪浙皖"), st.sampled_from("ABCDEF"),
                     st.text(alphabet="0123456789", min_size=5, max_size=5)).map("".join)


@given(plate=plate_st, data=st.data())
def test_a_partial_pattern_written_with_i_and_o_still_finds_its_plate(
    plate: str, data: st.DataObject
) -> None:
    """Whoever writes a pattern from a witness's memory may write O for 0 and I for 1;
    reads never contain them (the plate rules read them as digits), so the pattern must
    not either."""
    assert plates.is_valid(plate)
    chars = list(plate)
    hidden = data.draw(st.sets(st.integers(2, len(chars) - 1), max_size=2))
    for i in range(2, len(chars)):
        if i in hidden:
            chars[i] = "?"
        elif chars[i] == "0" and data.draw(st.booleans()):
            chars[i] = "O"
        elif chars[i] == "1" and data.draw(st.booleans()):
            chars[i] = "I"
    if data.draw(st.booleans()):
        chars = [*chars[:-2], "*"]
    pattern, kind = wl.normalise_pattern("".join(chars))
    assert kind is wl.PatternKind.PARTIAL or "?" not in pattern
    index = WatchIndex.build([Entry("e", pattern, 2, NOW + timedelta(days=1))])
    assert [h.entry_id for h in index.match(plates.normalise(plate), NOW)] == ["e"]


def test_a_list_is_read_row_by_row() -> None:
    parsed = wl.parse_list(
        "\ufeffPlate,Colour,Make,Priority,Notes,Extra\n"
        "苏D12345,white,Toyota,1,dented,x\n"
        "\n"
        "苏D12345,,,,,\n"
        "苏D54321,,,7,,\n"
        "苏D*5,,,,,\n"
        "x,,,,,\n"
        "苏DA1234,,,,,\n",
        default_priority=3,
    )
    assert parsed.rows == [
        {"pattern": "苏D12345", "priority": 1,
         "vehicle": {"colour": "white", "make": "Toyota", "notes": "dented"}},
        {"pattern": "苏DA1234", "priority": 3, "vehicle": None},
    ]
    assert [(r["line"], r["code"]) for r in parsed.rejected] == [
        (4, "duplicate"), (5, "invalid_priority"), (6, "partial_pattern"), (7, "invalid_plate")]


def test_chinese_headers_are_understood() -> None:
    parsed = wl.parse_list("号牌,颜色,品牌\n苏D12345,白,丰田\n".encode())
    assert parsed.rows[0]["vehicle"] == {"colour": "白", "make": "丰田"}


def test_a_list_must_name_its_plate_column_and_be_utf8() -> None:
    with pytest.raises(ValidationFailed):
        wl.parse_list("car,colour\n苏D12345,white\n")
    with pytest.raises(ValidationFailed):
        wl.parse_list("plate\n苏D12345\n".encode("gb18030"))


def test_vehicle_summary() -> None:
    assert wl.vehicle_summary(None) == ""
    assert wl.vehicle_summary({"type": "SUV", "colour": "red", "notes": "roof box"}) == (
        "red SUV; roof box")
    assert wl.vehicle_summary({"notes": "roof box"}) == "roof box"
