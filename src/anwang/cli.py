"""The ``anwang`` command line (Typer). Names and behaviours here are a contract that
operators' scripts rely on: ``serve``, ``worker``, ``db upgrade``, ``user add``,
``apikey create``, ``audit verify``/``export``, ``demo``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from anwang.settings import Settings

app = typer.Typer(
    name="anwang",
    help="anwang (安网): a privacy-protective operations platform for a public-safety bureau.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
events_app = typer.Typer(help="Events the consumers gave up on.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
app.add_typer(events_app, name="events")

err = Console(stderr=True)


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's ValidationError: show it plainly
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def _check_schema(settings: Settings) -> None:
    from anwang.core import migrate

    url = settings.resolved_database_url
    head = migrate.head_revision()
    cur = migrate.current(url)
    if cur != head:
        err.print(
            f"[red]the database is at revision {cur or '(empty)'}, not {head}:[/red] "
            "run `anwang db upgrade` first"
        )
        raise typer.Exit(2)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "info",
) -> None:
    """Serve the web interface and the API."""
    import uvicorn

    from anwang.app import create_app

    settings = _settings()
    _check_schema(settings)
    _logging(log_level.upper())
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level.lower())


@app.command()
def worker() -> None:
    """Run the bus consumers (on NATS JetStream). Start several to share the work."""
    from anwang.alerts.handlers import start_periodic as start_alert_rounds
    from anwang.checkpoints import mqtt_intake as checkpoint_reads
    from anwang.checkpoints.handlers import start_housekeeping, stop_housekeeping
    from anwang.communities import handlers as communities
    from anwang.consumers import all_consumers
    from anwang.core.bus import make_bus
    from anwang.core.db import Database
    from anwang.core.outbox import Outbox
    from anwang.dispatch import handlers as dispatch

    settings = _settings()
    if settings.bus_url == "memory://":
        err.print(
            "[red]`anwang worker` needs a shared bus:[/red] set ANWANG_BUS_URL=nats://host:4222 "
            "(with the in-process bus, `anwang serve` runs the consumers itself)"
        )
        raise typer.Exit(2)
    _check_schema(settings)
    _logging()

    async def run() -> None:
        db = Database(settings.resolved_database_url)
        bus = make_bus(settings.bus_url, db, stream=settings.nats_stream,
                       ack_wait=settings.nats_ack_wait_s)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        consumers = all_consumers()
        await bus.start(consumers, run_consumers=True)
        outbox = Outbox(db, bus)
        db.publisher = outbox.publish
        relay = asyncio.create_task(outbox.relay())
        alert_rounds = start_alert_rounds(db, settings)
        housekeeping = start_housekeeping(db, settings)
        devices = communities.start(db, settings)
        units = dispatch.start(db, settings)
        plate_reads = checkpoint_reads.start(db, settings)
        err.print(f"worker running {len(consumers)} consumer(s) on {settings.bus_url}")
        await stop.wait()
        relay.cancel()
        alert_rounds.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
        await stop_housekeeping(housekeeping)
        await communities.stop(devices)
        await dispatch.stop(units)
        await checkpoint_reads.stop(plate_reads)
        await bus.close()
        db.dispose()

    asyncio.run(run())


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply the migrations (SQLite and PostgreSQL alike)."""
    from anwang.core import migrate

    settings = _settings()
    migrate.upgrade(settings.resolved_database_url, revision)
    err.print(f"database at {migrate.current(settings.resolved_database_url)}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's revision."""
    from anwang.core import migrate

    typer.echo(migrate.current(_settings().resolved_database_url) or "(empty)")


@audit_app.command("verify")
def audit_verify(
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Also check a checkpoint written earlier by `anwang audit export`."),
    ] = None,
) -> None:
    """Recompute the hash chain. Exit 0 when intact; exit 1 and the first bad entry otherwise."""
    from anwang.core import audit
    from anwang.core.db import Database

    settings = _settings()
    db = Database(settings.resolved_database_url)
    with db.unit_of_work(readonly=True) as session:
        result = audit.verify(session)
        cp_problem = None
        if checkpoint is not None:
            cp_problem = _check_checkpoint(session, checkpoint)
    db.dispose()
    if not result.ok:
        typer.echo(f"audit trail BROKEN at entry {result.bad_seq}: {result.problem}")
        typer.echo(f"entries verified before it: {result.head_seq}")
        raise typer.Exit(1)
    if cp_problem:
        typer.echo(f"audit trail does not match the checkpoint: {cp_problem}")
        raise typer.Exit(1)
    typer.echo(
        f"audit trail intact: {result.checked} entries, head {result.head_seq} {result.head_hash}"
    )


def _check_checkpoint(session: object, path: Path) -> str | None:
    from anwang.core import audit

    try:
        cp = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return f"cannot read {path}: {exc}"
    if not audit.verify_checkpoint(cp):
        return "the checkpoint's signature is not valid"
    entry = audit.entry_at(session, int(cp["seq"]))  # type: ignore[arg-type]
    if int(cp["seq"]) == 0:
        return None
    if entry is None:
        return f"entry {cp['seq']} named by the checkpoint is missing (truncated)"
    if entry.hash != cp["hash"]:
        return f"entry {cp['seq']} has hash {entry.hash}, the checkpoint says {cp['hash']}"
    return None


@audit_app.command("export")
def audit_export(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here.")] = None,
) -> None:
    """Write a checkpoint of the chain's head signed with the installation's Ed25519 key."""
    import getpass

    from anwang.core import audit
    from anwang.core.db import Database

    settings = _settings()
    key = audit.load_or_create_signing_key(settings.signing_key_path)
    db = Database(settings.resolved_database_url)
    with db.unit_of_work() as session:
        audit.record(
            session, "anwang.audit.checkpoint.exported", actor=f"cli:{getpass.getuser()}",
            data={"output": str(output) if output else "stdout"},
        )
        cp = audit.export_checkpoint(session, key)
    db.dispose()
    text = json.dumps(cp, indent=2)
    if output:
        output.write_text(text + "\n")
        err.print(f"checkpoint of entry {cp['seq']} written to {output}")
    else:
        typer.echo(text)


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the generated city.")] = 7,
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Start the server when loaded.")
    ] = True,
) -> None:
    """Generate the demo city, load it, print the demo logins and serve it."""
    from anwang.demo.loader import load_demo

    settings = _settings()
    if settings.env.value == "prod":
        err.print("[red]the demo refuses to run with ANWANG_ENV=prod[/red]")
        raise typer.Exit(2)
    logins = load_demo(settings, seed=seed, console=err)
    err.print(f"\n[bold]anwang demo[/bold] — http://{host}:{port}/")
    err.print("Demo logins (username / password / role / jurisdiction):")
    for u in logins:
        err.print(f"  {u.username:<12} {u.password:<20} {u.role:<12} {u.jurisdiction or 'city'}")
    if serve_after:
        import uvicorn

        from anwang.app import create_app

        _logging("WARNING")
        uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


@events_app.command("dead")
def events_dead(
    all_: Annotated[bool, typer.Option("--all", help="Also those already replayed.")] = False,
) -> None:
    """List the events a consumer gave up on (its handler kept failing on them)."""
    from sqlalchemy import select

    from anwang.core.db import Database, DeadEvent

    settings = _settings()
    _check_schema(settings)
    db = Database(settings.resolved_database_url)
    with db.unit_of_work(readonly=True) as session:
        stmt = select(DeadEvent).order_by(DeadEvent.failed_at)
        if not all_:
            stmt = stmt.where(DeadEvent.replayed_at.is_(None))
        rows = list(session.scalars(stmt))
        for r in rows:
            state = f"replayed {r.replayed_at:%Y-%m-%d %H:%M}" if r.replayed_at else "waiting"
            typer.echo(f"{r.failed_at:%Y-%m-%d %H:%M:%S}  {r.consumer}  {r.event_id}  {r.name}  "
                       f"{r.attempts} attempt(s), {state}\n    {r.error}")
    db.dispose()
    err.print(f"{len(rows)} dead event(s)")


@events_app.command("replay")
def events_replay(
    consumer: Annotated[str | None, typer.Option(help="Only this consumer's events.")] = None,
    event_id: Annotated[str | None, typer.Option("--id", help="Only this event.")] = None,
) -> None:
    """Run dead events through their consumers again, once the cause is fixed. Exit 1
    when one of them fails again (it stays dead, with the new error)."""
    from anwang.consumers import all_consumers
    from anwang.core import audit
    from anwang.core.bus import replay_dead
    from anwang.core.db import Database

    settings = _settings()
    _check_schema(settings)
    db = Database(settings.resolved_database_url)
    done = replay_dead(db, all_consumers(), consumer=consumer, event_id=event_id)
    if done:
        with db.unit_of_work() as session:
            audit.record(session, "anwang.core.dead_events.replayed", actor="cli",
                         result_count=sum(r.ok for r in done),
                         data={"replayed": [r.event_id for r in done if r.ok],
                               "failed": [r.event_id for r in done if not r.ok]})
    db.dispose()
    for r in done:
        typer.echo(f"{'ok    ' if r.ok else 'FAILED'}  {r.consumer}  {r.event_id}  {r.name}"
                   + (f"\n    {r.error}" if r.error else ""))
    failed = sum(not r.ok for r in done)
    err.print(f"{len(done) - failed} replayed, {failed} failed")
    if failed:
        raise typer.Exit(1)


def _register_subcommands() -> None:
    from anwang.auth.cli import apikey_app, user_app
    from anwang.checkpoints.cli import import_app, purge
    from anwang.checkpoints.simulate import simulate_app
    from anwang.communities.cli import devices_app, simulate_devices
    from anwang.dispatch.cli import coverage_app
    from anwang.roads.cli import roads_app
    from anwang.watchlist.cli import watchlist_app

    app.add_typer(user_app, name="user")
    app.add_typer(apikey_app, name="apikey")
    app.add_typer(import_app, name="import")
    app.command("purge")(purge)
    app.add_typer(simulate_app, name="simulate")
    simulate_app.command("devices")(simulate_devices)
    app.add_typer(devices_app, name="devices")
    app.add_typer(watchlist_app, name="watchlist")
    app.add_typer(roads_app, name="roads")
    app.add_typer(coverage_app, name="coverage")


_register_subcommands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
