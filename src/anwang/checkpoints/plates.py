"""Licence plates: normalise what a camera or a person wrote, and parse it by local rules.

Nothing here knows about a country in code. A jurisdiction is a :class:`PlateRules` value —
which characters exist, which separators are dropped, which look-alike letters are read as
digits, and a list of plate formats — and it can be loaded from any JSON- or TOML-shaped
mapping with :meth:`PlateRules.from_mapping`. Two rule sets are built in, both written as
plain mappings and loaded the same way: :data:`MAINLAND_CN` (GA 36-2018) and
:data:`ALNUM_2_TO_10`, a jurisdiction-neutral fallback.

Normalisation (:func:`normalise`)
---------------------------------
1. NFKC: full-width letters and digits become ASCII (``Ａ`` → ``A``, ``１`` → ``1``,
   ``－`` → ``-``, the ideographic space → a space); CJK characters stay as they are.
2. Upper case.
3. Every whitespace character and every character of ``rules.strip`` is removed (for the
   mainland: ``.``, ``·``, ``•``, ``・``, hyphens and dashes, ``_``, zero-width characters).
4. When ``rules.map_confusables`` is set, ``rules.confusables`` (for the mainland
   ``I`` → ``1``, ``O`` → ``0``) is applied to every position except the
   ``keep_after_province`` characters that follow a leading province character — the
   issuing-authority letter keeps what was read (see below).

The result is a fixed point: ``normalise(normalise(x)) == normalise(x)`` for every string.

Mainland China, GA 36-2018 (《中华人民共和国机动车号牌》)
-------------------------------------------------------
A civilian plate number is the province abbreviation (one of the 31 provincial-level
abbreviations, 京 … 琼), the issuing-authority code (发牌机关代号, one Latin letter) and a
serial (序号). In a serial the letters ``I`` and ``O`` are never used, so that they cannot
be mistaken for ``1`` and ``0``; a camera or a clerk that reads one there has read the digit,
and normalisation says so.

The issuing-authority letter is treated differently on purpose. ``I`` is not assigned
there either, but ``O`` is: several provinces reserve it for public-security and
government vehicles (e.g. 粤O). Mapping it to ``0`` would turn a real plate into an
invalid one, so the issuer position is left as read: ``O`` is a valid issuer, ``I`` (and any
digit) makes the plate ``bad_format``.

Formats of :data:`MAINLAND_CN` (``kind`` — layout — example):

* ``ordinary`` (blue/yellow) — province, issuer, five serial characters of which at most
  two are letters (GA 36-2018: a serial is all digits, or has one letter in any position,
  or two letters) — 苏D12345, 苏DA1234, 京CA12B3.
* ``new_energy_small`` (green) — province, issuer, six serial characters: the first is the
  energy letter, the second a letter or a digit, the last four digits — 苏DD12345,
  苏DFA1234 (but not 苏DF1A234).
* ``new_energy_large`` (yellow-green) — province, issuer, five digits, then the energy
  letter — 苏D12345D.
  The energy letter is ``D`` (pure electric) or ``F`` (not purely electric); once those
  number ranges are used up the standard allows ``A B C E`` for pure electric and
  ``G H J K`` for the others, so those are accepted too.
* ``police`` 警, ``coach`` 学 (driving-school vehicles), ``trailer`` 挂, ``consulate``
  领, ``trial`` 试 (test vehicles) and ``special`` 超 (over-size vehicles) — province,
  issuer, four serial characters, then the marker — 京A1234警, 苏D1234学, 沪A1234领.
  (试 and 超 are given the same layout as 学 and 挂; confirm against local issuance.)
* ``hong_kong`` 港 and ``macau`` 澳 — vehicles from Hong Kong and Macau registered in
  Guangdong: always 粤Z, four serial characters, then the marker — 粤Z1234港, 粤Z123A澳.
* ``embassy`` 使 — the marker first, then six digits: a three-digit code of the country or
  international organisation and a three-digit sequence, e.g. 使224009. Its ``issuer``
  is the mission code and ``province`` is empty.

Out of scope by default: plates of the People's Liberation Army and of the People's Armed
Police (a separate system outside GA 36), paper temporary plates and the two-character
应急 (emergency-rescue) marker. They are left out not because they do not matter at a
checkpoint — they do — but because their layouts are not part of the civilian standard. A
deployment that needs them adds formats of kind ``other`` (or any kind name) to its rule
mapping, together with any extra characters in ``markers``; nothing in the code changes.

Errors
------
:func:`parse` raises :class:`InvalidPlate` with one of the stable reason codes of
:data:`REASONS`. Its message never repeats the plate: plate numbers are personal data and
error messages end up in logs.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from anwang.core.errors import FieldError, ValidationFailed

__all__ = [
    "ALNUM_2_TO_10",
    "MAINLAND_CN",
    "MAX_INPUT_LENGTH",
    "REASONS",
    "InvalidPlate",
    "Plate",
    "PlateFormat",
    "PlateRules",
    "is_valid",
    "normalise",
    "parse",
]

#: Raw input longer than this is not a plate; it is refused before any Unicode work.
MAX_INPUT_LENGTH = 64

#: The reason codes of :class:`InvalidPlate`, stable across releases.
REASONS: tuple[str, ...] = (
    "empty",  # nothing left after normalisation
    "too_long",  # raw input longer than MAX_INPUT_LENGTH
    "bad_characters",  # a character that no plate of these rules contains
    "unknown_province",  # the rules need a province and the plate does not start with one
    "bad_format",  # the characters are fine, the layout matches no format
    "too_many_letters",  # the layout fits, but the serial has more letters than allowed
)

_CLASS_REF = re.compile(r"\[:([A-Za-z_][A-Za-z0-9_]*):\]")
_GROUPS = frozenset({"province", "issuer", "serial"})


class InvalidPlate(ValidationFailed, ValueError):
    """The text is not a plate of the given rules; ``reason`` is one of :data:`REASONS`."""

    code = "anwang.checkpoints.invalid_plate"
    title = "Not a valid licence plate"

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(
            f"{reason}: {detail}" if detail else reason,
            errors=[FieldError("plate", reason)],
        )


@dataclass(frozen=True, slots=True)
class Plate:
    """A parsed plate. ``text`` is the normalised plate number, the key to store and match."""

    text: str
    province: str
    issuer: str
    serial: str
    kind: str
    country: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class PlateFormat:
    """One plate layout.

    ``pattern`` is a regular expression matched against the whole normalised text. It may
    name the groups ``province``, ``issuer`` and ``serial`` (those left out are empty in the
    :class:`Plate`) and refer to character classes as ``[:name:]``: ``[:province:]`` is any
    province of the rules, ``[:letter:]``/``[:digit:]`` and every other name come from
    :attr:`PlateRules.classes`. ``max_serial_letters`` caps the number of letters in the
    ``serial`` group.
    """

    kind: str
    pattern: str
    max_serial_letters: int | None = None

    def to_mapping(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "pattern": self.pattern}
        if self.max_serial_letters is not None:
            out["max_serial_letters"] = self.max_serial_letters
        return out


def _chars(value: Any, what: str) -> frozenset[str]:
    """A set of tokens from a string (one per character) or a list of strings."""
    if isinstance(value, str):
        return frozenset(value)
    if isinstance(value, Iterable):
        items = list(value)
        if all(isinstance(v, str) and v for v in items):
            return frozenset(items)
    raise ValueError(f"{what} must be a string or a list of non-empty strings")


def _char_class(chars: str) -> str:
    return "[" + "".join(re.escape(c) for c in sorted(set(chars))) + "]"


@dataclass(frozen=True)
class PlateRules:
    """The plate rules of one jurisdiction — data, see the module documentation."""

    country: str
    name: str
    formats: tuple[PlateFormat, ...]
    provinces: frozenset[str] = frozenset()
    markers: frozenset[str] = frozenset()
    letters: str = string.ascii_uppercase
    digits: str = string.digits
    classes: Mapping[str, str] = field(default_factory=dict, hash=False)
    strip: str = ".-"
    confusables: Mapping[str, str] = field(default_factory=dict, hash=False)
    map_confusables: bool = False
    keep_after_province: int = 1

    # Derived once, not part of the value.
    _compiled: tuple[tuple[PlateFormat, re.Pattern[str]], ...] = field(
        init=False, repr=False, compare=False, hash=False
    )
    _alphabet: frozenset[str] = field(init=False, repr=False, compare=False, hash=False)
    _letter_set: frozenset[str] = field(init=False, repr=False, compare=False, hash=False)
    _strip_table: Mapping[int, None] = field(init=False, repr=False, compare=False, hash=False)
    _map_table: Mapping[int, str] = field(init=False, repr=False, compare=False, hash=False)
    _province_lengths: tuple[int, ...] = field(init=False, repr=False, compare=False, hash=False)
    #: Plates recently parsed under these rules (:func:`parse`), by the text as given.
    _parsed: dict[str, Plate] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "_parsed", {})
        put(self, "formats", tuple(self.formats))
        put(self, "provinces", frozenset(self.provinces))
        put(self, "markers", frozenset(self.markers))
        put(self, "classes", MappingProxyType(dict(self.classes)))
        put(self, "confusables", MappingProxyType(dict(self.confusables)))
        if not self.formats:
            raise ValueError("plate rules need at least one format")
        if self.keep_after_province < 0:
            raise ValueError("keep_after_province must be >= 0")

        alphabet = set(self.letters) | set(self.digits) | set(self.markers)
        for province in self.provinces:
            alphabet.update(province)
        for c in alphabet:
            # Every character a plate may hold must survive normalisation unchanged,
            # otherwise no plate could contain it.
            if unicodedata.normalize("NFKC", c) != c or c.upper() != c or c.isspace():
                raise ValueError(f"character {c!r} is not stable under normalisation")
            if c in self.strip:
                raise ValueError(f"character {c!r} is both allowed and stripped")
        for src, dst in self.confusables.items():
            if len(src) != 1 or len(dst) != 1:
                raise ValueError("confusables map single characters to single characters")
            if dst in self.confusables:
                raise ValueError(f"confusable target {dst!r} is itself mapped")
            if dst not in alphabet:
                raise ValueError(f"confusable target {dst!r} is not an allowed character")
        put(self, "_alphabet", frozenset(alphabet))
        put(self, "_letter_set", frozenset(self.letters))
        put(self, "_strip_table", MappingProxyType(dict.fromkeys(map(ord, self.strip))))
        put(
            self,
            "_map_table",
            MappingProxyType({ord(k): v for k, v in self.confusables.items()}),
        )
        put(
            self, "_province_lengths", tuple(sorted({len(p) for p in self.provinces}, reverse=True))
        )

        classes = {"letter": self.letters, "digit": self.digits, **self.classes}
        province_re = "|".join(
            re.escape(p) for p in sorted(self.provinces, key=lambda p: (-len(p), p))
        )

        def expand(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "province":
                if not self.provinces:
                    raise ValueError("a format refers to [:province:] but there are none")
                return f"(?:{province_re})"
            if name not in classes or not classes[name]:
                raise ValueError(f"unknown or empty character class [:{name}:]")
            return _char_class(classes[name])

        compiled = []
        for fmt in self.formats:
            if not fmt.kind:
                raise ValueError("every format needs a kind")
            try:
                rx = re.compile(_CLASS_REF.sub(expand, fmt.pattern))
            except re.error as exc:
                raise ValueError(f"format {fmt.kind!r}: bad pattern: {exc}") from None
            unknown = set(rx.groupindex) - _GROUPS
            if unknown:
                raise ValueError(f"format {fmt.kind!r}: unknown groups {sorted(unknown)}")
            if fmt.max_serial_letters is not None and "serial" not in rx.groupindex:
                raise ValueError(f"format {fmt.kind!r}: max_serial_letters needs a serial group")
            compiled.append((fmt, rx))
        put(self, "_compiled", tuple(compiled))

    # -- loading -------------------------------------------------------------------

    _KEYS = frozenset(
        {
            "country",
            "name",
            "formats",
            "provinces",
            "markers",
            "letters",
            "digits",
            "classes",
            "strip",
            "confusables",
            "map_confusables",
            "keep_after_province",
        }
    )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PlateRules:
        """Rules from a JSON/TOML-shaped mapping (the shape :meth:`to_mapping` returns).

        Unknown keys are an error, so that a misspelt setting cannot be silently ignored.
        """
        unknown = set(data) - cls._KEYS
        if unknown:
            raise ValueError(f"unknown plate-rule keys: {sorted(unknown)}")
        for key in ("country", "name", "formats"):
            if key not in data:
                raise ValueError(f"plate rules need {key!r}")
        formats = []
        for item in data["formats"]:
            if not isinstance(item, Mapping):
                raise ValueError("each format must be a mapping")
            extra = set(item) - {"kind", "pattern", "max_serial_letters"}
            if extra:
                raise ValueError(f"unknown format keys: {sorted(extra)}")
            limit = item.get("max_serial_letters")
            if limit is not None and (not isinstance(limit, int) or limit < 0):
                raise ValueError("max_serial_letters must be a non-negative integer")
            formats.append(PlateFormat(str(item["kind"]), str(item["pattern"]), limit))
        kwargs: dict[str, Any] = {
            "country": str(data["country"]),
            "name": str(data["name"]),
            "formats": tuple(formats),
        }
        for key in ("provinces", "markers"):
            if key in data:
                kwargs[key] = _chars(data[key], key)
        for key in ("letters", "digits", "strip"):
            if key in data:
                if not isinstance(data[key], str):
                    raise ValueError(f"{key} must be a string")
                kwargs[key] = data[key]
        for key in ("classes", "confusables"):
            if key in data:
                value = data[key]
                if not isinstance(value, Mapping) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()
                ):
                    raise ValueError(f"{key} must map strings to strings")
                kwargs[key] = dict(value)
        if "map_confusables" in data:
            if not isinstance(data["map_confusables"], bool):
                raise ValueError("map_confusables must be true or false")
            kwargs["map_confusables"] = data["map_confusables"]
        if "keep_after_province" in data:
            if not isinstance(data["keep_after_province"], int):
                raise ValueError("keep_after_province must be an integer")
            kwargs["keep_after_province"] = data["keep_after_province"]
        return cls(**kwargs)

    def to_mapping(self) -> dict[str, Any]:
        """The rules as a JSON/TOML-shaped mapping; ``from_mapping`` reads it back."""
        return {
            "country": self.country,
            "name": self.name,
            "provinces": sorted(self.provinces),
            "markers": "".join(sorted(self.markers)),
            "letters": self.letters,
            "digits": self.digits,
            "classes": dict(self.classes),
            "strip": self.strip,
            "confusables": dict(self.confusables),
            "map_confusables": self.map_confusables,
            "keep_after_province": self.keep_after_province,
            "formats": [f.to_mapping() for f in self.formats],
        }

    # -- helpers -----------------------------------------------------------------

    def province_prefix(self, text: str) -> str:
        """The province that ``text`` starts with, or ``""``."""
        for n in self._province_lengths:
            if text[:n] in self.provinces:
                return text[:n]
        return ""

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of plate these rules know, in format order, without repeats."""
        return tuple(dict.fromkeys(f.kind for f in self.formats))


# -- built-in rule sets (data) -----------------------------------------------------------

_CN_SERIAL_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # A–Z without I and O
_CN_HEAD = "(?P<province>[:province:])(?P<issuer>[:issuer:])"


def _cn_marker(kind: str, marker: str) -> dict[str, Any]:
    return {"kind": kind, "pattern": _CN_HEAD + "(?P<serial>[:alnum:]{4})" + marker}


MAINLAND_CN_MAPPING: Mapping[str, Any] = MappingProxyType(
    {
        "country": "CN",
        "name": "Mainland China, GA 36-2018",
        "provinces": "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼",
        "markers": "警学挂港澳领使试超",
        "letters": string.ascii_uppercase,
        "digits": string.digits,
        "classes": {
            "issuer": "ABCDEFGHJKLMNOPQRSTUVWXYZ",  # no I; O is assigned (e.g. 粤O)
            "letter": _CN_SERIAL_LETTERS,
            "alnum": _CN_SERIAL_LETTERS + string.digits,
            "energy": "DABCEFGHJK",  # D/A/B/C/E pure electric, F/G/H/J/K others
        },
        "strip": ".·•・‧∙-‐‑‒–—―_\u200b\u200c\u200d\u2060\ufeff",
        "confusables": {"I": "1", "O": "0"},
        "map_confusables": True,
        "keep_after_province": 1,
        "formats": [
            {
                "kind": "ordinary",
                "pattern": _CN_HEAD + "(?P<serial>[:alnum:]{5})",
                "max_serial_letters": 2,
            },
            {
                "kind": "new_energy_small",
                "pattern": _CN_HEAD + "(?P<serial>[:energy:][:alnum:][:digit:]{4})",
            },
            {
                "kind": "new_energy_large",
                "pattern": _CN_HEAD + "(?P<serial>[:digit:]{5}[:energy:])",
            },
            _cn_marker("police", "警"),
            _cn_marker("coach", "学"),
            _cn_marker("trailer", "挂"),
            _cn_marker("consulate", "领"),
            _cn_marker("trial", "试"),
            _cn_marker("special", "超"),
            {
                "kind": "hong_kong",
                "pattern": "(?P<province>粤)(?P<issuer>Z)(?P<serial>[:alnum:]{4})港",
            },
            {
                "kind": "macau",
                "pattern": "(?P<province>粤)(?P<issuer>Z)(?P<serial>[:alnum:]{4})澳",
            },
            {
                "kind": "embassy",
                "pattern": "使(?P<issuer>[:digit:]{3})(?P<serial>[:digit:]{3})",
            },
        ],
    }
)

#: Mainland China, GA 36-2018 — see the module documentation.
MAINLAND_CN: PlateRules = PlateRules.from_mapping(MAINLAND_CN_MAPPING)

ALNUM_2_TO_10_MAPPING: Mapping[str, Any] = MappingProxyType(
    {
        "country": "ZZ",
        "name": "Any 2 to 10 Latin letters and digits",
        "letters": string.ascii_uppercase,
        "digits": string.digits,
        "classes": {"alnum": string.ascii_uppercase + string.digits},
        "strip": ".·-‐‑–—_/",
        "formats": [
            {"kind": "ordinary", "pattern": "(?P<serial>[:alnum:]{2,10})"},
        ],
    }
)

#: A jurisdiction-neutral fallback: 2–10 Latin letters and digits, no provinces, no
#: look-alike mapping. ``ZZ`` is the user-assigned ISO 3166 code for "unknown".
ALNUM_2_TO_10: PlateRules = PlateRules.from_mapping(ALNUM_2_TO_10_MAPPING)


# -- normalisation -------------------------------------------------------------------


def _normalise_once(text: str, rules: PlateRules) -> str:
    if text.isascii():
        text = text.upper()
    else:
        text = unicodedata.normalize("NFKC", text)
        upper = text.upper()
        if upper != text:
            # Upper-casing can produce decomposed sequences (e.g. "ΐ"); recompose.
            text = unicodedata.normalize("NFKC", upper)
    text = "".join(text.translate(rules._strip_table).split())
    if rules.map_confusables and rules._map_table:
        table = rules._map_table
        province = rules.province_prefix(text)
        if province:
            keep_end = len(province) + rules.keep_after_province
            text = text[:keep_end] + text[keep_end:].translate(table)
        else:
            text = text.translate(table)
    return text


def normalise(text: str, rules: PlateRules = MAINLAND_CN) -> str:
    """The canonical spelling of ``text`` under ``rules`` (default :data:`MAINLAND_CN`).

    Never raises for a string; the result may still be an invalid plate.
    """
    out = _normalise_once(text, rules)
    if rules._alphabet.issuperset(out):
        # Only characters that normalisation leaves alone: already a fixed point.
        return out
    for _ in range(8):  # exotic input: repeat until nothing changes
        again = _normalise_once(out, rules)
        if again == out:
            break
        out = again
    return out


# -- parsing -------------------------------------------------------------------------


#: Valid plates remembered per rule set by :func:`parse` (the same vehicles pass the
#: checkpoints again and again); when full, the memory starts again from empty.
PARSE_CACHE_SIZE = 32_768


def parse(text: str, rules: PlateRules = MAINLAND_CN) -> Plate:
    """Normalise and parse ``text``; raise :class:`InvalidPlate` when it is no plate.

    A plate is a pure function of the text and the rules, so valid plates are
    remembered (:data:`PARSE_CACHE_SIZE` per rule set); refusals are not.
    """
    cache = rules._parsed
    plate = cache.get(text)
    if plate is not None:
        return plate
    plate = _parse(text, rules)
    if len(cache) >= PARSE_CACHE_SIZE:
        cache.clear()
    cache[text] = plate
    return plate


def _parse(text: str, rules: PlateRules) -> Plate:
    if len(text) > MAX_INPUT_LENGTH:
        raise InvalidPlate("too_long", f"more than {MAX_INPUT_LENGTH} characters")
    norm = normalise(text, rules)
    if not norm:
        raise InvalidPlate("empty", "nothing left after normalisation")
    if not rules._alphabet.issuperset(norm):
        bad = set(norm) - rules._alphabet
        shown = ", ".join(f"U+{ord(c):04X}" for c in sorted(bad))
        raise InvalidPlate("bad_characters", f"not used on plates: {shown}")
    letter_limited = False
    for fmt, rx in rules._compiled:
        m = rx.fullmatch(norm)
        if m is None:
            continue
        groups = m.groupdict("")
        serial = groups.get("serial", "")
        if fmt.max_serial_letters is not None:
            letters = sum(1 for c in serial if c in rules._letter_set)
            if letters > fmt.max_serial_letters:
                letter_limited = True
                continue
        return Plate(
            text=norm,
            province=groups.get("province", ""),
            issuer=groups.get("issuer", ""),
            serial=serial,
            kind=fmt.kind,
            country=rules.country,
        )
    if letter_limited:
        raise InvalidPlate("too_many_letters", "the serial has more letters than allowed")
    if rules.provinces and not rules.province_prefix(norm) and norm[0] not in rules.markers:
        raise InvalidPlate("unknown_province", "does not start with a known province")
    raise InvalidPlate("bad_format", "the layout matches no plate format")


def is_valid(text: str, rules: PlateRules = MAINLAND_CN) -> bool:
    """Whether ``text`` parses under ``rules``."""
    try:
        parse(text, rules)
    except InvalidPlate:
        return False
    return True
