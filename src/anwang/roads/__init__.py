"""Road-network engine: one graph format for the demo city and imported OpenStreetMap extracts.

* :mod:`anwang.roads.graph` — :class:`~anwang.roads.graph.RoadGraph`, a directed graph in
  CSR arrays (node coordinates, per-edge length, free-flow time, road class, OSM way id)
  with per-class speeds, optional time-of-day factors and a single-file ``.npz`` format
  (plain arrays, no pickle) that loads in milliseconds;
* :mod:`anwang.roads.osm` — :func:`~anwang.roads.osm.import_pbf` turns an ``.osm.pbf``
  extract into a ``RoadGraph`` plus an :class:`~anwang.roads.osm.ImportReport` (needs the
  optional ``osmium`` package, imported only when called);
* :mod:`anwang.roads.routing` — snapping coordinates to nodes, point-to-point routes,
  one-to-many / many-to-one travel costs, nearest units and multi-source reachability
  (isochrones, coverage), all on ``scipy.sparse.csgraph.dijkstra`` without Python loops
  over nodes.

The package is pure numpy/scipy: no database, and nothing of the platform but
:mod:`anwang.core.errors`.
"""
