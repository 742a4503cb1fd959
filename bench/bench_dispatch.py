"""Dispatch recommendation as the platform computes it, beside NetworkX.

    python bench/bench_dispatch.py [--grid 500] [--incidents 30] [--update-docs]

``bench_routing.py`` times the bare nearest-unit search. This times what
``GET /api/v1/incidents/{id}/recommendations`` adds on top, on the demo city (seed 7)
and on the synthetic ``--grid``² network of ``bench_routing`` (500² = 250,000 nodes),
with 200 units on random nodes:

* **rank + routes** — per incident: one reverse Dijkstra from the incident bounded by
  15 minutes, widened to 60 when fewer than 10 units arrive within 15
  (:func:`anwang.dispatch.recommend.rank_nearest`, as the service calls it), every
  unit's ETA, and the routes of the 5 quickest walked from the predecessor tree
  (``route_of``). NetworkX: ``dijkstra_predecessor_and_distance`` on the reversed view
  with the same cutoffs, and the same 5 routes walked from its predecessors. ETAs are
  checked to agree.
* **coverage held** — which demand nodes each of the 200 units reaches within
  3 minutes, and the weight only it reaches (:func:`coverage_held`): computed once per
  change of the available units and cached by the service. NetworkX: one
  ``single_source_dijkstra_path_length`` with ``cutoff`` per unit. Results are checked to
  agree.

Medians of repeated runs (p95 for incidents); graph construction is not timed.
``--update-docs`` replaces the ``## Dispatch recommendation`` section of
``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
try:
    import anwang  # noqa: F401
except ImportError:  # running from a checkout without installing the package
    sys.path.insert(0, str(ROOT.parent / "src"))

import networkx as nx  # noqa: E402
from bench_routing import demo_city, grid, to_networkx  # noqa: E402
from perfdoc import machine, update_section  # noqa: E402

from anwang.dispatch.recommend import (  # noqa: E402
    coverage_held,
    rank_nearest,
    rank_units,
    route_of,
)
from anwang.roads.graph import RoadGraph  # noqa: E402

UNITS = 200
TOP = 5
CUTOFFS = (900.0, 3600.0)
WANT = 10
COVER_S = 180.0


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def bench(name: str, g: RoadGraph, incidents: int, seed: int = 11) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    main = np.flatnonzero(g.largest_component_mask())
    units = rng.choice(main, size=UNITS, replace=False)
    targets = rng.choice(main, size=incidents, replace=False)
    ref = to_networkx(g)
    rev = ref.reverse(copy=False)
    ours_t: list[float] = []
    theirs_t: list[float] = []
    rank_units(g, int(targets[0]), units, cutoff_s=CUTOFFS[0])  # warm the CSR caches
    for t in targets.tolist():
        t0 = time.perf_counter()
        r = rank_nearest(g, t, units, want=WANT, cutoffs_s=CUTOFFS)
        routes = [route_of(g, r, int(i)) for i in r.order[:TOP] if r.reachable(int(i))]
        ours_t.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        for cutoff in CUTOFFS:
            pred, dist = nx.dijkstra_predecessor_and_distance(rev, t, cutoff=cutoff,
                                                              weight="time")
            eta = np.array([dist.get(int(u), np.inf) for u in units])
            if np.isfinite(eta).sum() >= WANT:
                break
        best = np.lexsort((np.arange(UNITS), eta))[:TOP]
        their_routes = []
        for i in best:
            if not np.isfinite(eta[i]):
                continue
            path = [int(units[i])]
            while path[-1] != t:
                path.append(pred[path[-1]][0])
            their_routes.append(path)
        theirs_t.append((time.perf_counter() - t0) * 1000)
        assert np.allclose(eta, r.eta_s, rtol=1e-6, equal_nan=True)
        assert [len(x) for x in their_routes] == [x.nodes.size for x in routes]
    rows = [{"network": name, "nodes": g.n_nodes, "edges": g.n_edges,
             "task": f"rank {UNITS} units + routes of the {TOP} quickest, per incident",
             "ours": statistics.median(ours_t), "ours_p95": p95(ours_t),
             "theirs": statistics.median(theirs_t), "theirs_p95": p95(theirs_t)}]

    w = np.ones(g.n_nodes)
    reps = 3
    ours_c: list[float] = []
    for _ in range(reps):
        t0 = time.perf_counter()
        held = coverage_held(g, units, w, cutoff_s=COVER_S)
        ours_c.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    counts = np.zeros(g.n_nodes, dtype=np.int64)
    reached = []
    for u in units.tolist():
        d = nx.single_source_dijkstra_path_length(ref, u, cutoff=COVER_S, weight="time")
        idx = np.fromiter(d.keys(), dtype=np.int64)
        reached.append(idx)
        counts[idx] += 1
    alone = np.array([float((counts[idx] == 1).sum()) for idx in reached])
    theirs_c = (time.perf_counter() - t0) * 1000
    assert np.allclose(alone, held.alone_weight)
    rows.append({"network": name, "nodes": g.n_nodes, "edges": g.n_edges,
                 "task": f"3-min coverage held by each of {UNITS} units",
                 "ours": statistics.median(ours_c), "ours_p95": None,
                 "theirs": theirs_c, "theirs_p95": None})
    return rows


def fmt(ms: float, p: float | None) -> str:
    text = f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"
    return text + (f" (p95 {p:.2f})" if p is not None and p < 100 else
                   f" (p95 {p:.0f})" if p is not None else "")


def section(rows: list[dict[str, Any]]) -> str:
    lines = [
        "## Dispatch recommendation",
        "",
        "What `GET /api/v1/incidents/{id}/recommendations` computes besides the bare nearest-"
        "unit search of *Routing*: every unit's ETA (one reverse Dijkstra from the incident "
        "bounded by 15 minutes, widened to 60 when fewer than 10 units arrive) and the "
        "routes of the 5 quickest, walked from its predecessor tree (`anwang.dispatch."
        "recommend.rank_nearest`, `route_of`), and the 3-minute coverage each unit alone holds "
        "(`coverage_held`, cached by the service until the available units change). "
        "NetworkX does the same work in the same run; results are checked to agree. "
        f"{UNITS} units on random nodes; medians in milliseconds.",
        "",
        "| network | nodes | edges | task | anwang ms | NetworkX ms | NetworkX / anwang |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['nodes']:,} | {r['edges']:,} | {r['task']} | "
            f"{fmt(r['ours'], r['ours_p95'])} | {fmt(r['theirs'], r['theirs_p95'])} | "
            f"{r['theirs'] / r['ours']:.1f}× |")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines += ["", f"Command: `python bench/bench_dispatch.py`. Machine: {machine()}; run {stamp}.",
              ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int, default=500)
    ap.add_argument("--incidents", type=int, default=30)
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    rows = bench("demo city, seed 7", demo_city(), args.incidents)
    rows += bench(f"synthetic grid {args.grid}×{args.grid}", grid(args.grid), args.incidents)
    text = section(rows)
    print(text)
    if args.update_docs:
        update_section(text)


if __name__ == "__main__":
    main()
