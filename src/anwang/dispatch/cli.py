"""``anwang coverage ...``: response-circle coverage and post siting from the shell.

``analyze [--minutes 1,3,5] [--layer L] [--json]`` prints the share of demand the
active quick-response posts reach within each threshold, city-wide and per district.

``optimize --posts P --minutes T [--keep CODE ...] [--time-limit S]
[--candidates FILE.csv] [--max-candidates N] [--no-generate] [--json]`` chooses P posts
(today's posts, generated road-network candidates and an imported CSV list of
``lat,lon``) that reach the most demand within T minutes, keeping the ``--keep`` posts,
and stores the plan. ``--json`` prints one JSON object with ``objective``, ``bound``,
``gap`` (a fraction), ``covered_share_before``, ``covered_share_after``, ``seconds`` and
the chosen ``sites`` (and more); otherwise a summary and the moves go to stderr. Bad
input (p larger than the candidates, an unknown or surplus ``--keep``, no candidates)
exits with status 2 and says why.
"""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from anwang.core.db import Database
from anwang.core.errors import AnwangError
from anwang.core.scope import Scope
from anwang.dispatch import siting
from anwang.roads import service as roads_service
from anwang.settings import Settings

coverage_app = typer.Typer(help="Response circles (快反圈): coverage and post siting.",
                           no_args_is_help=True)
err = Console(stderr=True)


def _operator() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"cli:{name}"[:100]


def _fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # noqa: BLE001 - pydantic's message is the useful part
        _fail(f"invalid settings: {exc}".splitlines()[0])


def _describe(exc: AnwangError) -> str:
    if exc.errors:
        return "; ".join(f"{e.field}: {e.reason}" for e in exc.errors)
    return exc.detail


@coverage_app.command("analyze")
def analyze_cmd(
    minutes: Annotated[str, typer.Option(help="Thresholds in minutes.")] = "1,3,5",
    layer: Annotated[str | None, typer.Option(help="Demand layer (default: population, "
                                                   "else road nodes).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Share of demand the quick-response posts reach, city-wide and per district."""
    settings = _settings()
    db = Database(settings.resolved_database_url)
    try:
        loaded = roads_service.load(settings.data_dir)
        with db.unit_of_work(readonly=True, info={"scope": Scope(None)}) as session:
            result = siting.analyze(session, loaded, minutes=siting.parse_minutes(minutes),
                                    layer=layer)
    except AnwangError as exc:
        _fail(_describe(exc))
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    table = Table(title=f"{result['posts']} quick-response posts; demand: "
                        f"{result['layer'] or 'road nodes'}")
    table.add_column("area")
    for t in result["thresholds"]:
        table.add_column(f"≤ {t['minutes']:g} min", justify="right")
    table.add_row("city", *[f"{t['share']:.1%}" for t in result["thresholds"]])
    codes = [d["code"] for d in result["thresholds"][0]["districts"]]
    for i, code in enumerate(codes):
        name = result["thresholds"][0]["districts"][i]["name"]
        table.add_row(f"{code} {name}",
                      *[f"{t['districts'][i]['share']:.1%}" for t in result["thresholds"]])
    err.print(table)


@coverage_app.command("optimize")
def optimize_cmd(
    posts: Annotated[int, typer.Option("--posts", help="How many posts to site (P).")],
    minutes: Annotated[float, typer.Option(help="Response threshold T in minutes.")] = 3.0,
    keep: Annotated[list[str] | None, typer.Option(
        help="Post code to keep where it is (repeat, or comma-separated).")] = None,
    time_limit: Annotated[float, typer.Option("--time-limit", help="Seconds for the solver.")
                          ] = 60.0,
    candidates: Annotated[Path | None, typer.Option(
        help="CSV of further candidate sites (lat,lon).")] = None,
    max_candidates: Annotated[int, typer.Option(
        help="Most candidates in all (today's posts first).")] = 2000,
    generate: Annotated[bool, typer.Option(
        "--generate/--no-generate", help="Add candidates on the road network.")] = True,
    layer: Annotated[str | None, typer.Option(help="Demand layer.")] = None,
    backup: Annotated[float, typer.Option(
        help="Weight (0-1) of backup coverage: demand reached twice.")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Choose P posts that reach the most demand within T minutes (exact MCLP)."""
    settings = _settings()
    keep_codes = [c.strip() for item in (keep or []) for c in item.split(",") if c.strip()]
    imported: list[tuple[float, float]] = []
    if candidates is not None:
        try:
            text = candidates.read_text(encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot read {candidates}: {exc}")
        try:
            imported, errors = siting.parse_candidates_csv(text)
        except AnwangError as exc:
            _fail(_describe(exc))
        if errors:
            _fail("; ".join(f"line {e['line']}: {e['field']}: {e['reason']}" for e in errors[:5]))
    db = Database(settings.resolved_database_url)
    result: dict[str, Any]
    try:
        loaded = roads_service.load(settings.data_dir)
        with db.unit_of_work(info={"scope": Scope(None)}) as session:
            result = siting.optimize(
                session, loaded, p=posts, minutes=minutes, keep=keep_codes, layer=layer,
                generate=generate, max_candidates=max_candidates, imported=imported,
                backup_weight=backup, time_limit_s=time_limit, actor=_operator())
    except AnwangError as exc:
        _fail(_describe(exc))
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    gap = result["gap"]
    err.print(
        f"{result['p']} posts, {result['minutes']:g} min: coverage "
        f"{result['covered_share_before']:.2%} today → {result['covered_share_after']:.2%}; "
        f"gap {'unknown' if gap is None else f'{gap:.3%}'} ({result['status']}, "
        f"{result['seconds']:.1f} s; plan {result.get('plan_id')})")
    table = Table(title="moves")
    for col in ("from", "to", "distance"):
        table.add_column(col)
    for m in result["moves"]:
        src = m["from"]["code"] if m["from"] else "—"
        dst = (f"{m['to']['lat']:.5f},{m['to']['lon']:.5f}" if m["to"] else "closed")
        dist = f"{m['distance_m'] / 1000:.2f} km" if m["distance_m"] is not None else ""
        table.add_row(src or "—", dst, dist)
    err.print(table)
