"""Alarm ids made in bulk (the offline scan makes 100,000 at once): ULIDs of one instant,
the random part spelt 5 bits a character in Crockford's alphabet."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from anwang.communities.alarms import _CROCKFORD, crockford32, ulids


@given(st.binary(min_size=10, max_size=10))
def test_crockford32_spells_each_5_bits_most_significant_first(raw: bytes) -> None:
    r = int.from_bytes(raw, "big")
    assert crockford32(raw) == "".join(_CROCKFORD[(r >> s) & 31] for s in range(75, -1, -5))


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)
    )
)
def test_ulids_carry_the_instant_and_differ(at: datetime) -> None:
    made = ulids(50, at)
    assert len(set(made)) == 50
    for u in made:
        assert len(u) == 26 and set(u) <= set(_CROCKFORD)
        ms = 0
        for c in u[:10]:
            ms = ms * 32 + _CROCKFORD.index(c)
        assert ms == int(at.timestamp() * 1000)


def test_no_ids_for_none() -> None:
    assert ulids(0, datetime(2026, 11, 28, tzinfo=UTC)) == []
