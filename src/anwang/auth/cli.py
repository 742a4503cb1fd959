"""``anwang user ...`` and ``anwang apikey ...``: accounts and keys from the shell.

Each command builds :class:`~anwang.settings.Settings` from the environment, opens one
unit of work on ``settings.resolved_database_url`` and audits as ``cli:<os user>``.
Errors are one line on stderr and exit status 2. ``apikey create`` prints the key and
nothing else on stdout, so that ``KEY=$(anwang apikey create ...)`` works.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from anwang.auth import service
from anwang.auth.permissions import Role
from anwang.core.db import Database
from anwang.core.errors import AnwangError
from anwang.core.scope import Scope
from anwang.settings import Settings

user_app = typer.Typer(help="Manage people's accounts.", no_args_is_help=True)
apikey_app = typer.Typer(help="Manage API keys of devices and integrations.",
                         no_args_is_help=True)


def _actor() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"cli:{name}"[:100]


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@contextmanager
def _unit_of_work() -> Iterator[Session]:
    """One unit of work on the configured database; errors become one line and exit 2."""
    try:
        settings = Settings()
    except Exception as exc:  # noqa: BLE001 - pydantic's message is the useful part
        _fail(f"invalid settings: {exc}".splitlines()[0])
    try:
        db = Database(settings.resolved_database_url)
    except SQLAlchemyError as exc:
        _fail(f"cannot use the database URL: {exc}".splitlines()[0])
    try:
        with db.unit_of_work(info={"scope": Scope(None)}) as session:
            yield session
    except AnwangError as exc:
        _fail(exc.detail)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        _fail(f"database error ({reason}); is the database migrated ('anwang db upgrade')?")
    finally:
        db.dispose()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
        if not password:
            _fail("no password on standard input")
        return password
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    return value


# --- users --------------------------------------------------------------------------


@user_app.command("add")
def user_add(
    username: Annotated[str, typer.Argument(help="Lower-case login name.")],
    role: Annotated[Role, typer.Option(help="The user's role.")],
    jurisdiction: Annotated[
        str | None, typer.Option(help="Jurisdiction code; omit for city-wide.")
    ] = None,
    display_name: Annotated[str | None, typer.Option(help="Name shown in the UI.")] = None,
    locale: Annotated[str | None, typer.Option(help="zh_CN or en.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create a user (asks for the password twice unless --password-stdin)."""
    password = _read_password(password_stdin)
    with _unit_of_work() as session:
        user = service.create_user(
            session, username=username, password=password, role=role,
            jurisdiction_code=jurisdiction, display_name=display_name, locale=locale,
            actor=_actor(),
        )
        typer.echo(f"created {user.username} ({user.role})", err=True)


@user_app.command("list")
def user_list() -> None:
    """List users."""
    with _unit_of_work() as session:
        table = Table("username", "role", "jurisdiction", "active", "totp", "locked until",
                      "last login")
        for u in service.list_users(session):
            table.add_row(
                u.username, u.role, u.jurisdiction_code or "(city)",
                "yes" if u.active else "no", "yes" if u.totp_enabled else "no",
                u.locked_until.isoformat(timespec="seconds") if u.locked_until else "",
                u.last_login_at.isoformat(timespec="seconds") if u.last_login_at else "",
            )
    Console().print(table)


@user_app.command("set-role")
def user_set_role(
    username: Annotated[str, typer.Argument()],
    role: Annotated[Role, typer.Argument()],
) -> None:
    """Change a user's role."""
    with _unit_of_work() as session:
        service.set_role(session, username=username, role=role, actor=_actor())
    typer.echo(f"{username} is now {role}", err=True)


@user_app.command("reset-lockout")
def user_reset_lockout(username: Annotated[str, typer.Argument()]) -> None:
    """Clear a user's failed-login counter and lock."""
    with _unit_of_work() as session:
        service.reset_lockout(session, username=username, actor=_actor())
    typer.echo(f"{username} may log in again", err=True)


# --- API keys -----------------------------------------------------------------------


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="A unique name, e.g. the checkpoint's.")],
    role: Annotated[Role, typer.Option(help="Usually 'device'.")] = Role.DEVICE,
    jurisdiction: Annotated[
        str | None, typer.Option(help="Jurisdiction code; omit for city-wide.")
    ] = None,
) -> None:
    """Issue a key and print it (only it) on stdout. It is not shown again."""
    with _unit_of_work() as session:
        key, row = service.create_api_key(
            session, name=name, role=role, jurisdiction_code=jurisdiction, actor=_actor()
        )
        key_id = row.id
    # Printed only after the commit: a key that was never stored is never shown.
    typer.echo(key)
    typer.echo(f"created API key {key_id} ({name}); store it now, it is not shown again",
               err=True)


@apikey_app.command("list")
def apikey_list() -> None:
    """List API keys (never the keys themselves)."""
    with _unit_of_work() as session:
        table = Table("id", "name", "prefix", "role", "jurisdiction", "created",
                      "last used", "revoked")
        for k in service.list_api_keys(session):
            table.add_row(
                str(k.id), k.name, f"ak_{k.prefix}_…", k.role, k.jurisdiction_code or "(city)",
                k.created_at.isoformat(timespec="seconds"),
                k.last_used_at.isoformat(timespec="seconds") if k.last_used_at else "",
                k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "",
            )
    Console().print(table)


@apikey_app.command("revoke")
def apikey_revoke(key_id: Annotated[int, typer.Argument(help="The key's id.")]) -> None:
    """Revoke a key for good."""
    with _unit_of_work() as session:
        row = service.revoke_api_key(session, key_id=key_id, actor=_actor())
        name = row.name
    typer.echo(f"revoked API key {key_id} ({name})", err=True)
