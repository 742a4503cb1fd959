"""Point location over the jurisdiction polygons (no database)."""

from __future__ import annotations

import json

from anwang.auth.service import JurisdictionIndex


def sq(x0: float, y0: float, x1: float, y1: float) -> str:
    return json.dumps({"type": "Polygon",
                       "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]})


INDEX = JurisdictionIndex([
    ("9", "city", sq(0, 0, 10, 10)),
    ("901", "district", sq(0, 0, 5, 10)),
    ("902", "district", sq(5, 0, 10, 10)),
    ("90101", "station", sq(0, 0, 5, 5)),
    ("9010101", "grid", sq(0, 0, 2, 2)),
])


def test_finest_wins() -> None:
    assert INDEX.locate(1, 1) == "9010101"
    assert INDEX.locate(3, 3) == "90101"
    assert INDEX.locate(3, 7) == "901"
    assert INDEX.locate(7, 7) == "902"


def test_outside_and_nonsense() -> None:
    assert INDEX.locate(11, 5) is None
    assert INDEX.locate(float("nan"), 5) is None


def test_shared_border_is_deterministic() -> None:
    assert INDEX.locate(5, 7) == "902"
    assert INDEX.locate(5, 7) == INDEX.locate(5.0, 7.0)
