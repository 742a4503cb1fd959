"""``anwang import checkpoints FILE``, ``anwang import reads FILE.csv`` and ``anwang purge``.

Each command builds :class:`~anwang.settings.Settings` from the environment and works on
``settings.resolved_database_url`` city-wide, auditing as ``cli:<os user>``. Imports show
a progress bar, keep every valid row and list each rejected one (row number, field or
code, reason); they exit 0 when every row was taken, 1 when some were rejected, 2 when
the file could not be read at all.

``import reads`` runs the same validation as ``POST /api/v1/reads`` and stores the reads
directly (as the ``checkpoints.store_reads`` consumer does), so it needs no running
server; alerts for hits are raised in the same transaction and published by the outbox
of whichever anwang process runs next.
"""

from __future__ import annotations

import csv
import getpass
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from anwang.checkpoints import reads, service
from anwang.core.db import Database
from anwang.core.errors import AnwangError
from anwang.core.scope import Scope
from anwang.settings import Settings

import_app = typer.Typer(help="Import checkpoints and plate reads from files.",
                         no_args_is_help=True)

err = Console(stderr=True)

#: Reads per transaction of ``import reads``.
READ_CHUNK = 2000
#: Rejected rows listed in full; the rest are counted.
SHOW_ERRORS = 50


def _actor() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"cli:{name}"[:100]


def _fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code=2)


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # noqa: BLE001 - pydantic's message is the useful part
        _fail(f"invalid settings: {exc}".splitlines()[0])


@contextmanager
def _database(settings: Settings) -> Iterator[Database]:
    try:
        db = Database(settings.resolved_database_url)
    except SQLAlchemyError as exc:
        _fail(f"cannot use the database URL: {exc}".splitlines()[0])
    try:
        yield db
    except AnwangError as exc:
        _fail(exc.detail)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        _fail(f"database error ({reason}); is the database migrated ('anwang db upgrade')?")
    finally:
        db.dispose()


def _unit(db: Database) -> Any:
    return db.unit_of_work(info={"scope": Scope(None)})


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err,
    )


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}")


def _show_errors(title: str, rows: list[tuple[int, str, str]]) -> None:
    if not rows:
        return
    table = Table(title=title, title_justify="left")
    table.add_column("row", justify="right")
    table.add_column("field / code")
    table.add_column("reason")
    for n, what, reason in rows[:SHOW_ERRORS]:
        table.add_row(str(n), what, reason)
    err.print(table)
    if len(rows) > SHOW_ERRORS:
        err.print(f"... and {len(rows) - SHOW_ERRORS} more rejected rows")


@import_app.command("checkpoints")
def import_checkpoints(
    file: Annotated[Path, typer.Argument(help="A .csv or .geojson file.")],
) -> None:
    """Register or update checkpoints from a CSV or GeoJSON file.

    CSV columns: code,name,kind,lat,lon and optionally directions, lanes, active,
    silence_threshold_s. GeoJSON: a FeatureCollection of Points with those properties.
    """
    settings = _settings()
    data = _read_file(file)
    try:
        rows = service.parse_checkpoint_file(file.name, data)
    except AnwangError as exc:
        _fail(exc.detail)
    with _database(settings) as db, _progress() as progress, _unit(db) as session:
        task = progress.add_task(f"checkpoints from {file.name}", total=len(rows))
        report = service.import_checkpoints(
            session, rows=rows, actor=_actor(),
            on_row=lambda _n: progress.advance(task),
        )
    _show_errors("rejected rows", report.errors)
    err.print(
        f"{report.created} created, {report.updated} updated, {report.unchanged} unchanged, "
        f"{len(report.errors)} rejected (of {report.total} rows)"
    )
    if report.errors:
        raise typer.Exit(code=1)


_READ_COLUMNS = frozenset({
    "id", "checkpoint", "captured_at", "plate", "plate_color", "confidence", "lane",
    "direction", "image_ref", "vehicle_type", "vehicle_colour", "vehicle_make",
})


def _number(value: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(value)
    except ValueError:
        return value  # left for validation to reject with the field's code


def read_items_from_csv(text: str) -> list[dict[str, Any]]:
    """Reads of a CSV with a header naming the fields of a read (``vehicle_type``,
    ``vehicle_colour``, ``vehicle_make`` become ``vehicle``); empty cells are left out.
    Unknown columns are passed on, so validation rejects them as ``unknown_field``."""
    items = []
    for raw in csv.DictReader(io.StringIO(text.lstrip("\ufeff"))):
        item: dict[str, Any] = {}
        vehicle: dict[str, str] = {}
        for key, value in raw.items():
            if key is None or value is None or not value.strip():
                continue
            key, value = key.strip(), value.strip()
            if key.startswith("vehicle_") and key in _READ_COLUMNS:
                vehicle[key.removeprefix("vehicle_")] = value
            elif key == "confidence":
                item[key] = _number(value, float)
            elif key == "lane":
                item[key] = _number(value, int)
            else:
                item[key] = value
        if vehicle:
            item["vehicle"] = vehicle
        items.append(item)
    return items


def _store_chunk(
    session: Session, items: list[Any], retention_hours: int
) -> reads.IngestReport:
    return reads.ingest_reads(
        session, items=items, source=f"import:{_actor()}", retention_hours=retention_hours,
        store=True,
    )


@import_app.command("reads")
def import_reads(file: Annotated[Path, typer.Argument(help="A .csv file of plate reads.")]) -> None:
    """Take in plate reads from a CSV file, validated like the API's, row by row."""
    settings = _settings()
    try:
        text = _read_file(file).decode("utf-8")
    except UnicodeDecodeError:
        _fail(f"{file} is not UTF-8 text")
    items = read_items_from_csv(text)
    accepted = duplicates = alerts = 0
    rejected: list[tuple[int, str, str]] = []
    with _database(settings) as db, _progress() as progress:
        task = progress.add_task(f"reads from {file.name}", total=len(items))
        for start in range(0, len(items), READ_CHUNK):
            chunk = items[start : start + READ_CHUNK]
            with _unit(db) as session:
                report = _store_chunk(session, chunk, settings.read_retention_hours)
            accepted += report.accepted
            duplicates += report.duplicates
            alerts += report.alerts
            rejected.extend((start + r.index + 1, r.code, r.detail) for r in report.rejected)
            progress.advance(task, len(chunk))
    _show_errors("rejected reads", rejected)
    err.print(
        f"{accepted} accepted, {duplicates} duplicates, {len(rejected)} rejected, "
        f"{alerts} with watch-list hits (of {len(items)} rows)"
    )
    if rejected:
        raise typer.Exit(code=1)


def purge() -> None:
    """Delete the plate reads that are past their retention, and say what went.

    Reads that matched nothing go once older than ANWANG_READ_RETENTION_HOURS; reads
    with watch-list hits stay while an alert they belong to is open, then for
    ANWANG_ALERT_RETENTION_DAYS after it was closed. On PostgreSQL whole day partitions
    are dropped (or rebuilt with only their kept reads). Audited.
    """
    settings = _settings()
    with _database(settings) as db, _unit(db) as session:
        report = service.purge_reads(
            session, retention_hours=settings.read_retention_hours,
            alert_retention_days=settings.alert_retention_days, actor=_actor(),
            audit_empty=True,
        )
    if report.skipped:
        typer.echo("another process is purging right now; nothing done")
        return
    typer.echo(
        f"purged {report.deleted} plate read(s) captured before "
        f"{report.cutoff.isoformat(timespec='seconds')} "
        f"(retention {settings.read_retention_hours} h)"
    )
    typer.echo(
        f"  {report.unmatched} matched nothing; {report.released} had watch-list hits whose "
        f"alerts were closed more than {settings.alert_retention_days} day(s) ago"
    )
    for label, names in (("dropped", report.partitions_dropped),
                         ("rebuilt with their kept reads", report.partitions_rebuilt),
                         ("left for the next run (busy)", report.partitions_deferred)):
        if names:
            typer.echo(f"  partitions {label}: {', '.join(names)}")
