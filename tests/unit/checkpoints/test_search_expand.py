"""Expanding one ``?`` of a partial plate into the characters plates hold, so that a
pattern without a run of three known characters can still use a trigram index: the
expansions select exactly the plates the pattern selects. No database."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from anwang.checkpoints import plates, storage
from anwang.checkpoints.search import PLATE_ALPHABET, _expansion_phrase, expand_unknown


def matches(pattern: str, plate: str) -> bool:
    rx = "".join("." if c == "?" else ".*" if c == "*" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, plate, re.S) is not None


def test_the_alphabet_is_every_character_a_plate_can_hold() -> None:
    rules = plates.MAINLAND_CN
    assert set(PLATE_ALPHABET) == set(rules._alphabet)
    for plate in (
        "苏D12345",
        "苏DA1234",
        "京CA12B3",
        "苏DD12345",
        "苏D12345D",
        "京A1234警",
        "粤Z1234港",
        "使224009",
        "粤OA1234",
        "沪A1234领",
    ):
        assert plates.is_valid(plate) and set(plate) <= set(PLATE_ALPHABET)


def test_the_question_mark_that_joins_the_longest_run_is_expanded() -> None:
    out = expand_unknown("*3?8K*")
    assert out is not None and len(out) == len(PLATE_ALPHABET)
    assert out[:2] == ["*308K*", "*318K*"] and "*3A8K*" in out and "*3苏8K*" in out
    assert all(storage.fts_query(p) is not None for p in out)
    # 苏D?23*: the run 苏D + ? + 23 (five characters) beats nothing else.
    assert expand_unknown("苏D?23*") == [f"苏D{c}23*" for c in PLATE_ALPHABET]
    # Of two, the one in the longer run: ?1?34 → the second.
    assert expand_unknown("苏?1?34")[0] == "苏?1034"  # type: ignore[index]


def test_nothing_to_expand() -> None:
    assert expand_unknown("苏DA1?34") is None  # already has a run of three
    assert expand_unknown("*8K2*") is None
    assert expand_unknown("苏D*2?") is None  # 2? is a run of two at most
    assert expand_unknown("苏D*8*") is None  # no '?'
    assert expand_unknown("?A?*B?") is None  # each ? with its neighbours makes two


PLATE_CHARS = "苏京DEK0123"


@given(
    plate=st.text(st.sampled_from(PLATE_CHARS), min_size=1, max_size=9),
    pattern=st.text(st.sampled_from(PLATE_CHARS + "??*"), min_size=1, max_size=9),
)
def test_the_expansions_select_what_the_pattern_selects(plate: str, pattern: str) -> None:
    pattern = re.sub(r"\*+", "*", pattern)
    out = expand_unknown(pattern)
    if out is None:
        return
    assert all(storage.fts_query(p) is not None for p in out)
    assert matches(pattern, plate) == any(matches(p, plate) for p in out)


@given(data=st.data())
def test_a_plate_matches_some_expansion_of_a_pattern_made_from_it(data: st.DataObject) -> None:
    plate = data.draw(st.text(st.sampled_from(PLATE_ALPHABET), min_size=3, max_size=9))
    i = data.draw(st.integers(0, len(plate) - 1))
    pattern = plate[:i] + "?" + plate[i + 1 :]
    if data.draw(st.booleans()):
        j = data.draw(st.integers(0, len(pattern)))
        k = data.draw(st.integers(j, len(pattern)))
        if not j <= i < k:
            pattern = pattern[:j] + "*" + pattern[k:]
    out = expand_unknown(pattern)
    assert out is None or any(matches(p, plate) for p in out)


def test_each_expansion_is_looked_up_by_four_characters_around_the_written_one() -> None:
    assert _expansion_phrase("苏D?23*", "苏DA23*") == '"DA23"'
    assert _expansion_phrase("*3?8K*", "*3A8K*") == '"3A8K"'
    assert _expansion_phrase("*1?3", "*1A3") == '"1A3"'
    assert _expansion_phrase("?12*", "京12*") == '"京12"'


@given(
    plate=st.text(st.sampled_from(PLATE_CHARS), min_size=1, max_size=9),
    pattern=st.text(st.sampled_from(PLATE_CHARS + "??*"), min_size=1, max_size=9),
)
def test_a_plate_an_expansion_matches_contains_its_phrase(plate: str, pattern: str) -> None:
    pattern = re.sub(r"\*+", "*", pattern)
    for p in expand_unknown(pattern) or []:
        phrase = _expansion_phrase(pattern, p).strip('"')
        assert len(phrase) >= 3
        if matches(p, plate):
            assert phrase in plate
