"""``anwang watchlist ...``: importing external lists and housekeeping from the shell.

``import`` reads a CSV list (a ``plate`` column; optional ``priority``, ``type``,
``colour``, ``make``, ``model``, ``notes``) and puts it into force as ONE approved batch
in one transaction: the batch is recorded as imported by the operator (``cli:<os user>``,
or ``--imported-by``) and approved by ``--approved-by``, an existing user who may approve
watch-list entries and is not the importer. With ``--refresh`` the entries of the same
``--source`` that are no longer on the list are revoked. The report goes to stderr; bad
rows are listed with their line and do not stop the others. Errors exit with status 2.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from anwang.core.db import Database
from anwang.core.errors import AnwangError
from anwang.core.events import utcnow
from anwang.core.scope import Scope
from anwang.settings import Settings
from anwang.watchlist import service

watchlist_app = typer.Typer(help="Watch lists (布控): import external lists, expire entries.",
                            no_args_is_help=True)


def _operator() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"cli:{name}"[:100]


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@contextmanager
def _unit_of_work() -> Iterator[tuple[Session, Settings]]:
    try:
        settings = Settings()
    except Exception as exc:  # noqa: BLE001 - pydantic's message is the useful part
        _fail(f"invalid settings: {exc}".splitlines()[0])
    db = Database(settings.resolved_database_url)
    try:
        with db.unit_of_work(info={"scope": Scope(None), "settings": settings}) as session:
            yield session, settings
    except AnwangError as exc:
        detail = exc.detail
        if exc.errors:
            detail = "; ".join(f"{e.field}: {e.reason}" for e in exc.errors)
        _fail(detail)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        _fail(f"database error ({reason}); is the database migrated ('anwang db upgrade')?")
    finally:
        db.dispose()


@watchlist_app.command("import")
def import_list(
    file: Annotated[Path, typer.Argument(help="CSV file with a 'plate' column.",
                                         exists=True, dir_okay=False, readable=True)],
    approved_by: Annotated[str, typer.Option(help="The user who approved this list.")],
    legal_basis: Annotated[str, typer.Option(help="The legal basis of the list.")],
    case_ref: Annotated[str, typer.Option(help="The case or file reference.")],
    source: Annotated[str | None, typer.Option(
        help="Name of the external list (default: the file name without extension).")] = None,
    reason: Annotated[service.Reason, typer.Option(help="Why these vehicles are listed.")]
    = service.Reason.STOLEN_VEHICLE,
    priority: Annotated[int, typer.Option(min=1, max=3, help="Default priority (1-3).")] = 2,
    days: Annotated[int | None, typer.Option(
        min=1, help="Days until the entries expire (default: watchlist_max_days).")] = None,
    refresh: Annotated[bool, typer.Option(
        "--refresh/--no-refresh",
        help="Revoke the source's entries that are no longer on the list.")] = False,
    imported_by: Annotated[str | None, typer.Option(
        help="The importing user (default: cli:<your OS user>).")] = None,
) -> None:
    """Import an external stolen-vehicle list as one approved batch."""
    try:
        content = file.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {file}: {exc}")
    with _unit_of_work() as (session, settings):
        now = utcnow()
        importer = imported_by or _operator()
        approver, approver_role = service.check_approver(
            session, username=approved_by, importer=importer)
        parsed = service.parse_list(content, default_priority=priority)
        expires = now + timedelta(days=days or settings.watchlist_max_days)
        batch = service.import_list(
            session, source=source or file.stem, parsed=parsed, reason=reason,
            legal_basis=legal_basis, case_ref=case_ref, expires_at=expires,
            priority=priority, refresh=refresh, actor=importer,
            max_days=settings.watchlist_max_days, now=now,
        )
        batch = service.approve_batch(session, batch_id=batch.id, actor=approver,
                                      actor_role=approver_role, now=now)
        result = dict(batch.result or {})
        rejected = list(batch.rejected)
        batch_id, src = batch.id, batch.source
    for r in rejected:
        typer.echo(f"line {r['line']}: {r['code']}: {r['detail']}", err=True)
    typer.echo(
        f"batch {batch_id} ({src}): {result.get('created', 0)} created, "
        f"{result.get('renewed', 0)} renewed, {result.get('unchanged', 0)} unchanged, "
        f"{result.get('revoked', 0)} revoked, {len(rejected)} rejected; "
        f"expires {expires.isoformat(timespec='seconds')}",
        err=True,
    )


@watchlist_app.command("expire")
def expire(
    at: Annotated[datetime | None, typer.Option(
        help="Treat this moment (with offset) as now; default: now.")] = None,
) -> None:
    """Mark the entries whose expiry has passed as expired (the server does this every
    few seconds by itself)."""
    if at is not None and at.tzinfo is None:
        _fail("--at needs a UTC offset")
    with _unit_of_work() as (session, _settings):
        n = service.expire_entries(session, now=at or utcnow(), limit=100_000)
    typer.echo(f"{n} entries expired", err=True)
