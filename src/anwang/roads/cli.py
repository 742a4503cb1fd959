"""``anwang roads ...``: import an OpenStreetMap extract as the city's road network.

``anwang roads import FILE.osm.pbf`` reads the drivable roads (rules in
:mod:`anwang.roads.osm`) with a progress bar, prints the import report — disconnected
pieces and ways cut at the extract's edge included — and writes the graph to
``<data_dir>/roads.graph.npz`` (or ``--output``), where every running process picks it
up on its next request (:mod:`anwang.roads.service`). ``--json`` prints the report as
JSON on stdout instead. A file that cannot be read exits with status 2; nothing is
written then.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from anwang.core.errors import AnwangError
from anwang.roads import service
from anwang.settings import Settings

roads_app = typer.Typer(help="The road network: import OpenStreetMap extracts.",
                        no_args_is_help=True)

err = Console(stderr=True)


@roads_app.command("import")
def import_cmd(
    path: Annotated[Path, typer.Argument(help="An OpenStreetMap extract (.osm.pbf).")],
    output: Annotated[
        Path | None, typer.Option(help="Where to write the graph (default: the data directory).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Read the drivable roads of FILE and make them the city's road network."""
    from anwang.roads.osm import import_pbf

    try:
        settings = Settings()
    except Exception as exc:  # noqa: BLE001 - pydantic's message is the useful part
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    target = output or service.graph_path(settings.data_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(), console=err,
        transient=as_json,
    ) as progress:
        task = progress.add_task("reading", total=1.0)

        def report(stage: str, fraction: float) -> None:
            progress.update(task, completed=fraction, description=stage)

        try:
            graph, rep = import_pbf(path, progress=report)
        except AnwangError as exc:
            progress.stop()
            err.print(f"[red]error:[/red] {exc.detail}")
            raise typer.Exit(2) from exc
        progress.update(task, description="writing", completed=0.95)
        graph.save(target)
        progress.update(task, description="done", completed=1.0)
    if as_json:
        typer.echo(json.dumps({**rep.as_dict(), "output": str(target)}, ensure_ascii=False))
        return
    for line in rep.lines():
        err.print(line)
    if rep.strong_components > 1:
        err.print(
            f"routing snaps to the largest strongly connected piece "
            f"({rep.largest_scc_nodes:,} of {rep.nodes:,} nodes)"
        )
    err.print(f"written to {target}")
