"""Property tests of the username rule."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anwang.auth import service
from anwang.core.errors import ValidationFailed

ALLOWED = frozenset(string.ascii_lowercase + string.digits + "_.-")


def reference(name: str) -> bool:
    return 3 <= len(name) <= 64 and all(c in ALLOWED for c in name)


@given(st.text(max_size=80))
def test_any_text(name: str) -> None:
    assert service.is_valid_username(name) is reference(name)


@given(st.text(alphabet=sorted(ALLOWED), min_size=3, max_size=64))
def test_every_allowed_name(name: str) -> None:
    assert service.is_valid_username(name)


@given(
    st.text(alphabet=sorted(ALLOWED), min_size=2, max_size=63),
    st.sampled_from(["\n", " ", "A", "Z", "é", "张", "@", "/", "\x00", "\t"]),
    st.integers(min_value=0),
)
def test_one_bad_character_spoils_the_name(base: str, bad: str, at: int) -> None:
    i = at % (len(base) + 1)
    assert not service.is_valid_username(base[:i] + bad + base[i:])


@pytest.mark.parametrize("name", ["ab", "x" * 65, "abc\n", "Abc", "a b"])
def test_create_user_names_the_field(name: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        service._check_username(name)
    assert exc.value.errors[0].field == "username"
