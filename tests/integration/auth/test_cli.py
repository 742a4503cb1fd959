"""``anwang user ...`` and ``anwang apikey ...`` against a real database."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from anwang.auth import service
from anwang.auth.cli import apikey_app, user_app
from anwang.core.audit import AuditEntry
from anwang.core.db import Database

if TYPE_CHECKING:
    from tests.integration.auth.conftest import AuthKit


@pytest.fixture
def runner(db: Database) -> CliRunner:
    return CliRunner(env={"ANWANG_DATABASE_URL": db.url, "ANWANG_ENV": "dev"})


def test_user_add_with_password_on_stdin(runner: CliRunner, db: Database, kit: AuthKit) -> None:
    r = runner.invoke(user_app, ["add", "chen.jie", "--role", "officer", "--password-stdin",
                                 "--display-name", "陈杰"],
                      input="a long password with spaces \n")
    assert r.exit_code == 0, r.output
    user = kit.user("chen.jie")
    assert user.role == "officer" and user.display_name == "陈杰"
    # Only the line ending is stripped: the trailing space belongs to the password.
    assert service.verify_password(user.password_hash, "a long password with spaces ")
    with db.unit_of_work() as s:
        entry = s.scalars(select(AuditEntry).where(
            AuditEntry.action == "anwang.auth.user.created")).one()
        assert entry.actor is not None and entry.actor.startswith("cli:")


def test_user_add_prompts_twice(runner: CliRunner, kit: AuthKit) -> None:
    r = runner.invoke(user_app, ["add", "lin.yu", "--role", "analyst"],
                      input="typed password 1\ntyped password 1\n")
    assert r.exit_code == 0, r.output
    assert service.verify_password(kit.user("lin.yu").password_hash, "typed password 1")
    assert "typed password 1" not in r.output


def test_errors_are_one_line_and_exit_2(runner: CliRunner, kit: AuthKit) -> None:
    kit.add_user("taken")
    r = runner.invoke(user_app, ["add", "taken", "--role", "officer", "--password-stdin"],
                      input="another long password\n")
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")
    assert "already exists" in r.stderr

    r = runner.invoke(user_app, ["add", "shorty", "--role", "officer", "--password-stdin"],
                      input="short\n")
    assert r.exit_code == 2 and "password" in r.stderr and r.stderr.count("\n") == 1

    r = runner.invoke(user_app, ["set-role", "ghost", "admin"])
    assert r.exit_code == 2 and "ghost" in r.stderr


def test_user_list_set_role_and_reset_lockout(
    runner: CliRunner, db: Database, kit: AuthKit
) -> None:
    kit.add_user("zhang.san")
    r = runner.invoke(user_app, ["set-role", "zhang.san", "dispatcher"])
    assert r.exit_code == 0, r.output
    assert kit.user("zhang.san").role == "dispatcher"

    with db.unit_of_work() as s:
        user = service.get_user(s, username="zhang.san")
        user.failed_logins = 3
        user.locked_until = user.created_at
    r = runner.invoke(user_app, ["reset-lockout", "zhang.san"])
    assert r.exit_code == 0, r.output
    user = kit.user("zhang.san")
    assert user.failed_logins == 0 and user.locked_until is None

    r = runner.invoke(user_app, ["list"])
    assert r.exit_code == 0 and "zhang.san" in r.stdout and "dispatcher" in r.stdout
    assert kit.audit_actions("zhang.san")[-2:] == [
        "anwang.auth.user.role_changed", "anwang.auth.user.lockout_reset",
    ]


def test_apikey_create_prints_only_the_key(runner: CliRunner, db: Database, kit: AuthKit) -> None:
    kit.load_tree()
    r = runner.invoke(apikey_app, ["create", "--name", "gate-3", "--role", "device",
                                   "--jurisdiction", "3201"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and r.stdout == lines[0] + "\n"
    key = lines[0]
    assert re.fullmatch(r"ak_[0-9a-f]{8}_[A-Za-z0-9_-]+", key)
    with db.unit_of_work() as s:
        row = service.resolve_api_key(s, key=key)
        assert (row.name, row.role, row.jurisdiction_code) == ("gate-3", "device", "3201")
        key_id = row.id

    r = runner.invoke(apikey_app, ["list"])
    assert r.exit_code == 0 and "gate-3" in r.stdout and key not in r.stdout

    r = runner.invoke(apikey_app, ["revoke", str(key_id)])
    assert r.exit_code == 0, r.output
    with db.unit_of_work() as s:
        assert service.get_api_key(s, key_id=key_id).revoked_at is not None


def test_apikey_create_refuses_bad_input(runner: CliRunner, kit: AuthKit) -> None:
    r = runner.invoke(apikey_app, ["create", "--name", "x", "--role", "admin"])
    assert r.exit_code == 2 and r.stdout == ""
    r = runner.invoke(apikey_app, ["create", "--name", "y", "--jurisdiction", "nowhere"])
    assert r.exit_code == 2 and r.stdout == "" and "jurisdiction" in r.stderr
