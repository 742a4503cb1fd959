"""Watch-list matching: exact, approximate and partial hits, expiry, incremental updates."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anwang.watchlist.matcher import (
    DEFAULT_CONFUSABLES,
    MAX_READ_LENGTH,
    Entry,
    Hit,
    MatchKind,
    WatchIndex,
    _Bucket,
    validate_pattern,
)

NOW = datetime(2026, 11, 28, 8, 0, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=30)
PROVINCES = "苏京沪浙皖"
SERIAL = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"

GROUP_OF = {c: group for group in DEFAULT_CONFUSABLES for c in group}


def canonical_class(c: str) -> str:
    group = GROUP_OF.get(c)
    return DEFAULT_CONFUSABLES[group] if group else c


plate_st = st.tuples(
    st.sampled_from(PROVINCES),
    st.text(alphabet=SERIAL, min_size=6, max_size=7),
).map("".join)


@st.composite
def entries_st(draw: st.DrawFn, patterns: st.SearchStrategy[str] = plate_st) -> list[Entry]:
    pats = draw(st.lists(patterns, min_size=1, max_size=12))
    return [
        Entry(
            id=f"e{i}",
            pattern=p,
            priority=draw(st.integers(1, 3)),
            expires_at=LATER,
        )
        for i, p in enumerate(pats)
    ]


def ids(hits: list[Hit], kind: MatchKind | None = None) -> set[str]:
    return {h.entry_id for h in hits if kind is None or h.kind == kind}


# -- exact and approximate ----------------------------------------------------------


@settings(max_examples=150)
@given(entries_st())
def test_every_active_exact_entry_is_found(entries: list[Entry]) -> None:
    index = WatchIndex.build(entries)
    assert len(index) == len(entries)
    for entry in entries:
        hits = index.match(entry.pattern, NOW)
        assert Hit(entry.id, MatchKind.EXACT, entry.priority) in hits
        # Never the same entry twice.
        assert len(ids(hits)) == len(hits)


@settings(max_examples=200)
@given(plate_st, st.data())
def test_a_different_non_confusable_character_is_no_match(plate: str, data: st.DataObject) -> None:
    index = WatchIndex.build([Entry("w", plate, 1, LATER)])
    i = data.draw(st.integers(1, len(plate) - 1))
    other = data.draw(
        st.sampled_from([c for c in SERIAL if canonical_class(c) != canonical_class(plate[i])])
    )
    read = plate[:i] + other + plate[i + 1 :]
    assert index.match(read, NOW) == []


@settings(max_examples=200)
@given(plate_st, st.data())
def test_confusable_characters_match_approximately(plate: str, data: st.DataObject) -> None:
    swappable = [i for i in range(1, len(plate)) if plate[i] in GROUP_OF]
    if not swappable:
        plate = plate[0] + "0" + plate[2:]
        swappable = [1]
    chars = list(plate)
    for i in data.draw(st.sets(st.sampled_from(swappable), min_size=1)):
        group = GROUP_OF[chars[i]]
        chars[i] = data.draw(st.sampled_from([c for c in group if c != chars[i]]))
    read = "".join(chars)
    priority = data.draw(st.integers(1, 3))
    index = WatchIndex.build([Entry("w", plate, priority, LATER)])
    assert index.match(read, NOW) == [Hit("w", MatchKind.APPROXIMATE, max(priority, 2))]
    assert index.match(plate, NOW) == [Hit("w", MatchKind.EXACT, priority)]


@settings(max_examples=150)
@given(plate_st, st.sampled_from(PROVINCES + "粤川"), st.sampled_from(["", "swap"]))
def test_another_province_never_matches(plate: str, province: str, swap: str) -> None:
    if province == plate[0]:
        return
    index = WatchIndex.build([Entry("w", plate, 1, LATER)])
    read = province + plate[1:]
    if swap:  # and also differ only in confusables
        read = read[0] + read[1:].replace("0", "D").replace("8", "B")
    assert index.match(read, NOW) == []


def test_first_ascii_character_is_kept_too() -> None:
    index = WatchIndex.build([Entry("w", "0AB121", 1, LATER)])
    assert index.match("DAB121", NOW) == []
    assert index.match("0AB12T", NOW) == [Hit("w", MatchKind.APPROXIMATE, 2)]
    assert index.canonical("0AB12T") == index.canonical("0A8I21") != index.canonical("DAB121")


def test_a_confusable_table_is_configuration() -> None:
    index = WatchIndex.build([Entry("w", "苏D12345", 3, LATER)], confusables={"UV": "U"})
    assert index.match("苏012345", NOW) == []
    index = WatchIndex.build([Entry("w", "苏DU2345", 3, LATER)], confusables={"UV": "U"})
    assert index.match("苏DV2345", NOW) == [Hit("w", MatchKind.APPROXIMATE, 3)]


@pytest.mark.parametrize(
    "table",
    [{"0D": "00"}, {"0D": "0", "DQ": "0"}, {"苏D": "D"}, {"0D": "0", "8B": "D"}, {"?Z": "2"}],
)
def test_bad_confusable_tables(table: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        WatchIndex(table)


# -- status and expiry --------------------------------------------------------------


@settings(max_examples=150)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["active", "pending", "revoked", "expired"]),
            st.integers(-3, 3),
            st.sampled_from(["苏D12345", "苏D1234S", "苏D?2345", "*12345"]),
        ),
        min_size=1,
        max_size=10,
    )
)
def test_only_active_unexpired_entries_match(specs: list[tuple[str, int, str]]) -> None:
    entries = [
        Entry(f"e{i}", pattern, 2, NOW + timedelta(seconds=offset), status=status)
        for i, (status, offset, pattern) in enumerate(specs)
    ]
    index = WatchIndex.build(entries)
    expected = {e.id for e in entries if e.status == "active" and e.expires_at > NOW}
    assert ids(index.match("苏D12345", NOW)) == expected


def test_expiry_boundary_to_the_second() -> None:
    expires = datetime(2026, 12, 1, 0, 0, 0, tzinfo=UTC)
    index = WatchIndex.build(
        [
            Entry("x", "苏D12345", 1, expires),
            Entry("a", "苏D1234S", 1, expires),
            Entry("p", "苏D?234*", 1, expires),
        ]
    )
    second = timedelta(seconds=1)
    assert ids(index.match("苏D12345", expires - second)) == {"x", "a", "p"}
    assert index.match("苏D12345", expires) == []
    assert index.match("苏D12345", expires + second) == []
    # Other time zones are the same instant.
    beijing = (expires - second).astimezone(timezone_beijing())
    assert ids(index.match("苏D12345", beijing)) == {"x", "a", "p"}


def timezone_beijing() -> object:
    from datetime import timezone

    return timezone(timedelta(hours=8))


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError):
        Entry("x", "苏D12345", 1, datetime(2026, 12, 1))
    index = WatchIndex.build([Entry("x", "苏D12345", 1, LATER)])
    with pytest.raises(ValueError):
        index.match("苏D12345", datetime(2026, 12, 1))


@pytest.mark.parametrize(
    "kwargs",
    [{"priority": 0}, {"priority": 4}, {"priority": True}, {"status": "active "}, {"id": ""}],
)
def test_bad_entries(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"id": "x", "pattern": "苏D12345", "priority": 1, "expires_at": LATER}
    with pytest.raises(ValueError):
        Entry(**{**base, **kwargs})  # type: ignore[arg-type]


def test_hits_are_ordered_and_demoted() -> None:
    index = WatchIndex.build(
        [
            Entry("z", "苏D12345", 3, LATER),
            Entry("y", "苏D1234S", 1, LATER),
            Entry("x", "苏D1?345", 1, LATER),
            Entry("w", "苏D12345", 2, LATER),
        ]
    )
    assert index.match("苏D12345", NOW) == [
        Hit("w", MatchKind.EXACT, 2),
        Hit("y", MatchKind.APPROXIMATE, 2),
        Hit("x", MatchKind.PARTIAL, 2),
        Hit("z", MatchKind.EXACT, 3),
    ]


# -- partial patterns ----------------------------------------------------------------


def reference(pattern: str, plate: str) -> bool:
    """fnmatch-style: ``?`` one character, ``*`` any run; nothing else is special."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(body, plate, re.DOTALL) is not None


SMALL = "苏京AB12"  # a small alphabet, so that patterns and reads meet often
pattern_st = st.text(alphabet=SMALL + "??**", min_size=3, max_size=9).filter(
    lambda p: (
        sum(c not in "?*" for c in p) >= 3 and p.count("*") + p.count("?") > 0 and p.count("*") <= 3
    )
)
read_st = st.text(alphabet=SMALL, min_size=0, max_size=10)


@settings(max_examples=200)
@given(st.lists(pattern_st, min_size=1, max_size=15), st.lists(read_st, min_size=1, max_size=15))
def test_partial_patterns_agree_with_a_reference(patterns: list[str], reads: list[str]) -> None:
    entries = [Entry(f"p{i}", p, 2, LATER) for i, p in enumerate(patterns)]
    index = WatchIndex.build(entries)
    for read in reads:
        expected = {e.id for e in entries if reference(validate_pattern(e.pattern), read)}
        assert ids(index.match(read, NOW), MatchKind.PARTIAL) == expected


def test_partial_examples() -> None:
    index = WatchIndex.build(
        [
            Entry("a", "苏D?23*", 1, LATER),
            Entry("b", "*123*", 3, LATER),
            Entry("c", "苏D1234?", 2, LATER),
        ]
    )
    assert ids(index.match("苏DX2345", NOW)) == {"a"}
    assert ids(index.match("苏D123", NOW)) == {"a", "b"}
    assert ids(index.match("浙A11239", NOW)) == {"b"}
    assert ids(index.match("苏D12345", NOW)) == {"a", "b", "c"}
    assert ids(index.match("苏D1234", NOW)) == {"a", "b"}
    assert index.match("x" * (MAX_READ_LENGTH + 1), NOW) == []


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("苏D?23*", "苏D?23*"),
        ("苏d ？２３＊", "苏D?23*"),
        ("苏D-?23**", "苏D?23*"),
        ("*123*", "*123*"),
        ("苏·D12", "苏D12"),
    ],
)
def test_validate_pattern_normalises(raw: str, normalised: str) -> None:
    assert validate_pattern(raw) == normalised


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        (" - ", "empty"),
        ("*", "only wildcards"),
        ("?*?", "only wildcards"),
        ("苏?*D", "too broad"),
        ("*1*2*", "too broad"),
        ("苏D[12]*", "not allowed"),
        ("苏D" + "1" * 15, "longer"),
        ("1*2*3*4*5", "more than"),
    ],
)
def test_validate_pattern_refuses(raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        validate_pattern(raw)
    if "?" in raw or "*" in raw:  # a pattern without wildcards is an exact entry
        with pytest.raises(ValueError):
            WatchIndex.build([Entry("x", raw, 1, LATER)])


# -- incremental updates -------------------------------------------------------------

any_pattern_st = st.one_of(
    plate_st,
    plate_st.flatmap(lambda p: st.integers(1, len(p) - 1).map(lambda i: p[:i] + "?" + p[i + 1 :])),
    plate_st.map(lambda p: p[:4] + "*"),
    plate_st.map(lambda p: "*" + p[3:6] + "*"),
)

op_st = st.tuples(
    st.sampled_from(["add", "add", "remove"]),
    st.integers(0, 7),
    any_pattern_st,
    st.integers(1, 3),
    st.sampled_from(["active", "active", "revoked"]),
)


@settings(max_examples=150)
@given(st.lists(op_st, max_size=40), st.lists(plate_st, max_size=5))
def test_add_and_remove_agree_with_a_rebuild(
    ops: list[tuple[str, int, str, int, str]], extra_reads: list[str]
) -> None:
    index = WatchIndex.build([])
    current: dict[str, Entry] = {}
    probes = set(extra_reads)
    for op, n, pattern, priority, status in ops:
        entry_id = f"e{n}"
        if op == "add":
            entry = Entry(entry_id, pattern, priority, LATER, status=status)
            index.add(entry)
            current[entry_id] = entry
            probes.add(pattern.replace("?", "9").replace("*", "5"))
        else:
            assert index.remove(entry_id) is (entry_id in current)
            current.pop(entry_id, None)
        # Between changes: buckets compile, and plates that match nothing are remembered
        # (a later addition must make them match).
        for probe in probes:
            index.match(probe, NOW)
    rebuilt = WatchIndex.build(current.values())
    assert len(index) == len(rebuilt) == len(current)
    for read in probes:
        assert index.match(read, NOW) == rebuilt.match(read, NOW)
    assert index.stats() == rebuilt.stats()
    for entry_id in list(current):
        index.remove(entry_id)
    assert index.stats() == WatchIndex.build([]).stats()
    assert not index._trie and not index._exact and not index._approx


def test_duplicate_ids_in_a_build_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        WatchIndex.build([Entry("x", "苏D12345", 1, LATER), Entry("x", "苏D12346", 1, LATER)])


def test_a_failed_replacement_keeps_the_old_entry() -> None:
    index = WatchIndex.build([Entry("x", "苏D1234?", 1, LATER)])
    with pytest.raises(ValueError):
        index.add(Entry("x", "?*", 1, LATER))
    assert ids(index.match("苏D12345", NOW)) == {"x"}


def test_long_runs_of_changes_recompile_correctly(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small thresholds, so that fresh patterns, stale removals and full recompilations
    # all happen many times over.
    monkeypatch.setattr(_Bucket, "FRESH_LIMIT", 3)
    monkeypatch.setattr(_Bucket, "STALE_SLACK", 0)
    rng = random.Random(20261128)
    alphabet = "12AB"

    def pattern() -> str:
        head = rng.choice(["苏D", "苏A", "京A", "?D", "*"])
        tail = "".join(rng.choice(alphabet + "?*") for _ in range(rng.randint(2, 4)))
        candidate = head + tail
        try:
            validate_pattern(candidate)
        except ValueError:
            return head + "12" + alphabet[rng.randrange(4)] + "?"
        return candidate if ("?" in candidate or "*" in candidate) else candidate + "?"

    reads = [
        "苏D" + "".join(rng.choice(alphabet) for _ in range(rng.randint(2, 5))) for _ in range(60)
    ]
    reads += ["京A12A", "苏A121", "沪D12B1"]
    index = WatchIndex.build([])
    current: dict[str, Entry] = {}
    for step in range(1500):
        entry_id = f"e{rng.randrange(40)}"
        if rng.random() < 0.55:
            entry = Entry(entry_id, pattern(), rng.randint(1, 3), LATER)
            index.add(entry)
            current[entry_id] = entry
        else:
            index.remove(entry_id)
            current.pop(entry_id, None)
        if step % 10 == 0:
            read = rng.choice(reads)
            expected = {
                e.id for e in current.values() if reference(validate_pattern(e.pattern), read)
            }
            assert ids(index.match(read, NOW)) == expected
    rebuilt = WatchIndex.build(current.values())
    for read in reads:
        assert index.match(read, NOW) == rebuilt.match(read, NOW)


def test_a_plate_remembered_as_matching_nothing_matches_once_an_entry_is_added() -> None:
    index = WatchIndex.build([Entry("p", "苏D12*", 2, LATER)])
    for _ in range(2):  # the second read is answered from the memory
        assert index.match("苏E99999", NOW) == []
    assert "苏E99999" in index._misses
    index.add(Entry("e", "苏E99999", 1, LATER))
    assert [h.entry_id for h in index.match("苏E99999", NOW)] == ["e"]
    index.add(Entry("q", "苏E9999?", 3, LATER))
    assert [h.entry_id for h in index.match("苏E99999", NOW)] == ["e", "q"]
    # A plate whose only entry is not live at the read time is a candidate, not a miss.
    assert index.match("苏E99999", LATER) == []
    assert "苏E99999" not in index._misses
    index.remove("e")
    index.remove("q")
    assert index.match("苏E99999", NOW) == []
