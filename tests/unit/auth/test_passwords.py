"""Password policy and hashing."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from anwang.auth.service import (
    check_password_policy,
    hash_password,
    needs_rehash,
    verify_password,
)
from anwang.core.errors import ValidationFailed


@pytest.mark.parametrize("password", ["", "short", "123456789", "密码密码密码密码密"])
def test_short_passwords_are_refused(password: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        hash_password(password)
    assert [e.field for e in exc.value.errors] == ["password"]
    assert exc.value.status == 422


@pytest.mark.parametrize("password", ["1234567890", "密码密码密码密码密码", " " * 9 + "x"])
def test_ten_characters_are_enough(password: str) -> None:
    check_password_policy(password)


def test_overlong_passwords_are_refused() -> None:
    with pytest.raises(ValidationFailed):
        check_password_policy("x" * 1025)
    check_password_policy("x" * 1024)


def test_hash_and_verify() -> None:
    h = hash_password("correct horse battery")
    assert h.startswith("$argon2id$")
    assert "correct horse" not in h
    assert verify_password(h, "correct horse battery")
    assert not verify_password(h, "correct horse batterY")
    assert hash_password("correct horse battery") != h  # salted
    assert not needs_rehash(h)


def test_garbage_hash_never_verifies() -> None:
    assert not verify_password("not-a-hash", "whatever password")
    assert needs_rehash("not-a-hash")


def test_old_parameters_need_a_rehash() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash("pw1234567890")
    assert verify_password(weak, "pw1234567890")
    assert needs_rehash(weak)


def test_production_parameters_follow_rfc_9106() -> None:
    # The run's fixture swaps in a cheap hasher; what ships is argon2id t=3, m=64 MiB, p=4.
    from argon2 import Type

    from anwang.auth.service import _new_hasher

    params = _new_hasher()
    assert (params.type, params.time_cost, params.memory_cost, params.parallelism) == (
        Type.ID, 3, 64 * 1024, 4)
    assert _new_hasher().hash("pw1234567890").startswith("$argon2id$v=19$m=65536,t=3,p=4$")
