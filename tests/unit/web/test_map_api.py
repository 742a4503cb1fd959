"""The road-lines file cache behind ``GET /api/v1/map/roads``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from anwang.web.map_api import EMPTY_COLLECTION, RoadsCache


def write(path: Path, doc: object, mtime_ns: int) -> None:
    path.write_text(json.dumps(doc), encoding="utf-8")
    os.utime(path, ns=(mtime_ns, mtime_ns))


def roads(n: int) -> dict[str, object]:
    line = {"type": "LineString", "coordinates": [[119.9, 31.7], [120.0, 31.8]]}
    return {"type": "FeatureCollection",
            "features": [{"type": "Feature", "properties": {"highway": "primary"},
                          "geometry": line}] * n}


def test_missing_file_is_an_empty_collection(tmp_path: Path) -> None:
    assert json.loads(RoadsCache().get(tmp_path / "roads.geojson")) == {
        "type": "FeatureCollection", "features": []}


def test_the_file_is_read_again_only_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "roads.geojson"
    write(path, roads(1), 1_000_000_000)
    cache = RoadsCache()
    reads = 0
    original = Path.read_bytes

    def counting(self: Path) -> bytes:
        nonlocal reads
        reads += 1
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    first = cache.get(path)
    assert cache.get(path) is first and reads == 1
    write(path, roads(2), 2_000_000_000)
    assert len(json.loads(cache.get(path))["features"]) == 2 and reads == 2


def test_a_broken_file_is_served_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "roads.geojson"
    path.write_text("{not json", encoding="utf-8")
    assert RoadsCache().get(path) == EMPTY_COLLECTION
    write(path, {"type": "Feature"}, 3_000_000_000)
    assert RoadsCache().get(path) == EMPTY_COLLECTION
