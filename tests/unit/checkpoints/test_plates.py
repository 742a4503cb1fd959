"""Plate rules: normalisation, GA 36-2018 formats, rules as configuration."""

from __future__ import annotations

import json
import string
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from anwang.checkpoints import plates
from anwang.checkpoints.plates import (
    ALNUM_2_TO_10,
    MAINLAND_CN,
    REASONS,
    InvalidPlate,
    PlateRules,
    is_valid,
    normalise,
    parse,
)
from anwang.core.errors import ValidationFailed

CN = MAINLAND_CN
PROVINCES = sorted(CN.provinces)
ISSUERS = CN.classes["issuer"]
SERIAL_LETTERS = CN.classes["letter"]
ALNUM = CN.classes["alnum"]
ENERGY = CN.classes["energy"]
DIGITS = string.digits

MARKER_KINDS = {
    "police": "警",
    "coach": "学",
    "trailer": "挂",
    "consulate": "领",
    "trial": "试",
    "special": "超",
}


def chars(alphabet: str, n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=n, max_size=n)


head = st.tuples(st.sampled_from(PROVINCES), st.sampled_from(ISSUERS)).map("".join)


@st.composite
def ordinary_serial(draw: st.DrawFn) -> str:
    serial = list(draw(chars(DIGITS, 5)))
    for i in draw(st.sets(st.integers(0, 4), max_size=2)):
        serial[i] = draw(st.sampled_from(SERIAL_LETTERS))
    return "".join(serial)


def by_kind() -> dict[str, st.SearchStrategy[str]]:
    kinds: dict[str, st.SearchStrategy[str]] = {
        "ordinary": st.tuples(head, ordinary_serial()).map("".join),
        "new_energy_small": st.tuples(
            head, st.sampled_from(ENERGY), st.sampled_from(ALNUM), chars(DIGITS, 4)
        ).map("".join),
        "new_energy_large": st.tuples(head, chars(DIGITS, 5), st.sampled_from(ENERGY)).map("".join),
        "hong_kong": chars(ALNUM, 4).map(lambda s: f"粤Z{s}港"),
        "macau": chars(ALNUM, 4).map(lambda s: f"粤Z{s}澳"),
        "embassy": chars(DIGITS, 6).map(lambda s: f"使{s}"),
    }
    for kind, marker in MARKER_KINDS.items():
        kinds[kind] = st.tuples(head, chars(ALNUM, 4), st.just(marker)).map("".join)
    return kinds


KINDS = by_kind()
any_plate = st.sampled_from(sorted(KINDS)).flatmap(
    lambda kind: st.tuples(st.just(kind), KINDS[kind])
)


def test_every_kind_has_a_generator() -> None:
    assert set(KINDS) == set(CN.kinds)


@settings(max_examples=300)
@given(any_plate)
def test_generated_plates_parse_with_their_kind(kind_and_plate: tuple[str, str]) -> None:
    kind, text = kind_and_plate
    plate = parse(text)
    assert plate.kind == kind
    assert plate.text == text == normalise(text)
    assert plate.country == "CN"
    if kind == "embassy":
        assert (plate.province, plate.issuer, plate.serial) == ("", text[1:4], text[4:])
    else:
        assert plate.province == text[0] and plate.issuer == text[1]
        assert plate.serial in text[2:]
    assert is_valid(text)


def full_width(c: str) -> str:
    return chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c


@st.composite
def disguised(draw: st.DrawFn, text: str) -> str:
    """The same plate as a person or a camera might write it."""
    out = []
    for c in text:
        if c.isascii():
            if draw(st.booleans()):
                c = c.lower()
            if draw(st.booleans()):
                c = full_width(c)
        out.append(c)
        out.append(draw(st.sampled_from(["", "", " ", "·", "-", ".", "\u3000", "－", "．", "\t"])))
    return draw(st.sampled_from(["", " ", "\u3000"])) + "".join(out)


@settings(max_examples=300)
@given(any_plate.flatmap(lambda kp: st.tuples(st.just(kp[1]), disguised(kp[1]))))
def test_written_variants_normalise_to_the_plate(pair: tuple[str, str]) -> None:
    text, variant = pair
    assert normalise(variant) == normalise(text) == text
    assert parse(variant).text == text


@settings(max_examples=300)
@given(any_plate, st.data())
def test_letters_i_and_o_in_a_serial_are_read_as_digits(
    kind_and_plate: tuple[str, str], data: st.DataObject
) -> None:
    _, text = kind_and_plate
    start = 1 if text[0] == "使" else 2  # the issuer letter is left as read
    chars_ = list(text)
    for i in range(start, len(chars_)):
        if chars_[i] == "1" and data.draw(st.booleans()):
            chars_[i] = data.draw(st.sampled_from("Ii"))
        elif chars_[i] == "0" and data.draw(st.booleans()):
            chars_[i] = data.draw(st.sampled_from("Oo"))
    assert normalise("".join(chars_)) == text


@given(st.sampled_from(PROVINCES), chars(DIGITS, 5))
def test_issuer_o_is_valid_and_issuer_i_is_not(province: str, digits: str) -> None:
    assert parse(f"{province}O{digits}").issuer == "O"
    assert parse(f"{province}o{digits}").issuer == "O"
    with pytest.raises(InvalidPlate) as err:
        parse(f"{province}I{digits}")
    assert err.value.reason == "bad_format"


@settings(max_examples=500)
@given(st.text(max_size=24))
@example("")
@example("   ")
@example("苏")
@example("ΐ苏D12345")
@example("A\u0301")
@example("ß" * 40)
def test_any_text_is_a_plate_or_invalid_plate(text: str) -> None:
    once = normalise(text)
    assert normalise(once) == once
    try:
        plate = parse(text)
    except InvalidPlate as err:
        assert err.reason in REASONS
        assert isinstance(err, ValidationFailed) and isinstance(err, ValueError)
        assert err.errors[0].field == "plate"
    else:
        assert plate.text == once
        assert plate.kind in CN.kinds


@settings(max_examples=200)
@given(st.text(alphabet="".join(PROVINCES) + "警学挂港澳领使ABDFIOZ0123456789 ·-", max_size=10))
def test_near_plates_never_raise_anything_else(text: str) -> None:
    assert is_valid(text) in (True, False)
    once = normalise(text)
    assert normalise(once) == once


@given(head, ordinary_serial(), st.sampled_from(SERIAL_LETTERS))
def test_three_letters_in_an_ordinary_serial_are_too_many(
    prefix: str, serial: str, letter: str
) -> None:
    letters = [c for c in serial if c.isalpha()]
    positions = [i for i, c in enumerate(serial) if c.isdigit()]
    chars_ = list(serial)
    for i in positions[: 3 - len(letters)]:
        chars_[i] = letter
    with pytest.raises(InvalidPlate) as err:
        parse(prefix + "".join(chars_))
    assert err.value.reason == "too_many_letters"


@pytest.mark.parametrize(
    ("text", "kind", "province", "issuer", "serial"),
    [
        ("苏D12345", "ordinary", "苏", "D", "12345"),
        ("苏D·12345", "ordinary", "苏", "D", "12345"),
        ("京CA12B3", "ordinary", "京", "C", "A12B3"),
        ("苏DF1234", "ordinary", "苏", "D", "F1234"),  # 7 characters: not new energy
        ("苏DD12345", "new_energy_small", "苏", "D", "D12345"),
        ("沪AD A1234", "new_energy_small", "沪", "A", "DA1234"),
        ("苏D12345D", "new_energy_large", "苏", "D", "12345D"),
        ("京A1234警", "police", "京", "A", "1234"),
        ("苏D1234学", "coach", "苏", "D", "1234"),
        ("苏D1234挂", "trailer", "苏", "D", "1234"),
        ("沪A1234领", "consulate", "沪", "A", "1234"),
        ("粤Z1234港", "hong_kong", "粤", "Z", "1234"),
        ("粤Z·123A澳", "macau", "粤", "Z", "123A"),
        ("使224009", "embassy", "", "224", "009"),
        ("使 224-009", "embassy", "", "224", "009"),
        ("粤O12345", "ordinary", "粤", "O", "12345"),
        ("苏ｄ·ｉ２３４ｏ", "ordinary", "苏", "D", "12340"),
    ],
)
def test_real_life_examples(text: str, kind: str, province: str, issuer: str, serial: str) -> None:
    plate = parse(text)
    assert (plate.kind, plate.province, plate.issuer, plate.serial) == (
        kind,
        province,
        issuer,
        serial,
    )
    assert plate.text == province + ("使" if kind == "embassy" else "") + issuer + serial + (
        text[-1] if text[-1] in "警学挂领港澳" else ""
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (" ·-. ", "empty"),
        ("x" * 65, "too_long"),
        ("苏D1234#", "bad_characters"),
        ("苏D1234车", "bad_characters"),
        ("A12345", "unknown_province"),
        ("D12345", "unknown_province"),
        ("台A12345", "bad_characters"),  # not a mainland province, nor any plate character
        ("苏D1234", "bad_format"),
        ("苏D123456", "bad_format"),
        ("苏DF1A234", "bad_format"),  # new energy: the last four must be digits
        ("苏D1234D5", "bad_format"),
        ("京Z1234港", "bad_format"),  # Hong Kong plates are 粤Z
        ("粤Y1234港", "bad_format"),
        ("使12345", "bad_format"),
        ("苏DABC12", "too_many_letters"),
        ("京I12345", "bad_format"),
        ("苏112345", "bad_format"),
    ],
)
def test_invalid_examples(text: str, reason: str) -> None:
    with pytest.raises(InvalidPlate) as err:
        parse(text)
    assert err.value.reason == reason
    assert err.value.code == "anwang.checkpoints.invalid_plate"
    # The message never repeats the plate.
    if normalise(text):
        assert normalise(text) not in str(err.value)


def test_alphabet_is_stable_under_normalisation() -> None:
    for c in CN._alphabet:
        assert unicodedata.normalize("NFKC", c) == c
        assert c.upper() == c


# -- rules are configuration ------------------------------------------------------------


def test_mainland_rules_round_trip_through_json() -> None:
    mapping = json.loads(json.dumps(CN.to_mapping(), ensure_ascii=False))
    assert PlateRules.from_mapping(mapping) == CN
    assert PlateRules.from_mapping(plates.MAINLAND_CN_MAPPING) == CN


def test_other_formats_are_configuration() -> None:
    # Plates outside GA 36 are not built in; a deployment may add them as data.
    mapping = CN.to_mapping()
    mapping["formats"].append({"kind": "other", "pattern": "WJ(?P<serial>[:digit:]{5})"})
    assert not is_valid("WJ12345")
    rules = PlateRules.from_mapping(mapping)
    plate = parse("wj 12345", rules)
    assert (plate.kind, plate.serial) == ("other", "12345")
    assert parse("苏D12345", rules).kind == "ordinary"


DE_HEAD = "(?P<issuer>[:district:]{1,3})-"
DE_SERIAL = "(?P<serial>[:letter:]{1,2}[:nonzero:][:digit:]{0,3})"
GERMANY = {
    "country": "DE",
    "name": "Germany, written with the district hyphen",
    "letters": "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÜ",
    "digits": "0123456789",
    "markers": "-",
    "strip": ".·",
    "classes": {
        "district": "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÜ",
        "letter": string.ascii_uppercase,
        "nonzero": "123456789",
    },
    "formats": [
        {
            "kind": "electric",
            "pattern": DE_HEAD + DE_SERIAL + "E",
        },
        {
            "kind": "historic",
            "pattern": DE_HEAD + DE_SERIAL + "H",
        },
        {
            "kind": "ordinary",
            "pattern": DE_HEAD + DE_SERIAL + "",
        },
    ],
}


@pytest.mark.parametrize(
    ("text", "kind", "issuer", "serial"),
    [
        ("B-AB 123", "ordinary", "B", "AB123"),
        ("m-xy 1e", "electric", "M", "XY1"),
        ("HH-A 42H", "historic", "HH", "A42"),
        ("TÜ-AB 12", "ordinary", "TÜ", "AB12"),
        ("tü-ab 12", "ordinary", "TÜ", "AB12"),
    ],
)
def test_a_german_rule_set_from_a_mapping(text: str, kind: str, issuer: str, serial: str) -> None:
    rules = PlateRules.from_mapping(GERMANY)
    plate = parse(text, rules)
    assert (plate.kind, plate.province, plate.issuer, plate.serial) == (kind, "", issuer, serial)
    assert plate.country == "DE"
    for bad, reason in [("B-AB 0123", "bad_format"), ("苏D12345", "bad_characters")]:
        with pytest.raises(InvalidPlate) as err:
            parse(bad, rules)
        assert err.value.reason == reason


@given(st.text(alphabet=string.ascii_letters + string.digits + " -.", max_size=14))
def test_generic_rules(text: str) -> None:
    norm = "".join(c for c in text.upper() if c.isalnum())
    assert is_valid(text, ALNUM_2_TO_10) is (2 <= len(norm) <= 10)
    # No look-alike mapping in the generic rules: O stays O.
    assert normalise("o0", ALNUM_2_TO_10) == "O0"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "blue"}, "unknown plate-rule keys"),
        ({"formats": []}, "at least one format"),
        ({"formats": [{"kind": "x", "pattern": "[:nope:]"}]}, "character class"),
        ({"formats": [{"kind": "x", "pattern": "(?P<owner>A)"}]}, "unknown groups"),
        ({"formats": [{"kind": "x", "pattern": "("}]}, "bad pattern"),
        ({"formats": [{"kind": "x", "pattern": "A", "colour": 1}]}, "unknown format keys"),
        ({"confusables": {"I": "1", "1": "L"}}, "itself mapped"),
        ({"markers": "警-"}, "both allowed and stripped"),
        ({"markers": "ａ"}, "not stable"),
    ],
)
def test_bad_rule_mappings_are_refused(change: dict[str, object], message: str) -> None:
    mapping = {**CN.to_mapping(), **change}
    with pytest.raises(ValueError, match=message):
        PlateRules.from_mapping(mapping)


def test_missing_required_keys() -> None:
    with pytest.raises(ValueError, match="need 'formats'"):
        PlateRules.from_mapping({"country": "XX", "name": "x"})


# --- remembered plates ---------------------------------------------------------------------


@given(st.sampled_from(["苏D12345", "苏 d·12345", "京A1234警", "使224009", "苏DD12345"]))
def test_a_remembered_plate_is_the_plate_parsed_afresh(text: str) -> None:
    first = parse(text)
    assert parse(text) == first == plates._parse(text, MAINLAND_CN)


def test_remembered_plates_are_bounded_and_refusals_are_not_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rules = PlateRules.from_mapping(plates.ALNUM_2_TO_10_MAPPING)
    monkeypatch.setattr(plates, "PARSE_CACHE_SIZE", 5)
    for n in range(12):
        assert parse(f"AB{n}", rules).text == f"AB{n}"
        assert len(rules._parsed) <= 5
    for _ in range(2):
        with pytest.raises(InvalidPlate):
            parse("A", rules)
    assert "A" not in rules._parsed
    # Rules are values: a cache does not make two equal rule sets differ.
    assert rules == PlateRules.from_mapping(plates.ALNUM_2_TO_10_MAPPING)
