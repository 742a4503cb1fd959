"""Property tests of the prefix logic of jurisdiction scope."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from anwang.core.scope import Scope

codes = st.text(alphabet="0123456789AB_%", min_size=1, max_size=12)


@given(codes, st.text(alphabet="0123456789", max_size=6))
def test_a_scope_contains_its_descendants(code: str, suffix: str) -> None:
    assert Scope(code).contains(code + suffix)


@given(codes, codes)
def test_contains_is_the_prefix_test(scope: str, other: str) -> None:
    assert Scope(scope).contains(other) is other.startswith(scope)


@given(codes, codes)
def test_overlap_is_symmetric_and_implied_by_containment(a: str, b: str) -> None:
    assert Scope(a).overlaps(b) is Scope(b).overlaps(a)
    if Scope(a).contains(b):
        assert Scope(a).overlaps(b)
    assert Scope(a).overlaps(b) is (a.startswith(b) or b.startswith(a))


@given(codes, codes)
def test_siblings_do_not_overlap(parent: str, tail: str) -> None:
    left, right = Scope(parent + "1" + tail), parent + "2" + tail
    assert not left.contains(right)
    assert not left.overlaps(right)


@given(codes)
def test_city_wide_and_unplaced(code: str) -> None:
    assert Scope(None).contains(code) and Scope(None).contains(None)
    assert Scope(None).citywide and not Scope(code).citywide
    # A row with no jurisdiction is visible only city-wide.
    assert not Scope(code).contains(None)
    assert Scope(code).overlaps(None) and Scope(None).overlaps(code)
