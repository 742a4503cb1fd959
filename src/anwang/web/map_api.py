"""What the dashboard map needs besides the jurisdictions: the view and the road lines.

``GET /api/v1/map/config`` says where to look and which basemap to draw (none when
``settings.tile_url`` is empty: the map then shows anwang's own layers only).
``GET /api/v1/map/roads`` serves ``<data_dir>/roads.geojson`` — road lines the road
package or an operator put there — and an empty FeatureCollection when there is none.
The jurisdiction polygons come from ``GET /api/v1/jurisdictions`` (:mod:`anwang.auth.api`).
The browser side is ``web/static/js/map.js``.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from anwang.auth import service as auth_service
from anwang.auth.deps import Principal, StateDep, require
from anwang.auth.permissions import Action
from anwang.core.errors import NotFound
from anwang.core.scope import Scope

log = logging.getLogger(__name__)

router = APIRouter(prefix="/map", tags=["map"])

MapViewer = Annotated[Principal, Depends(require(Action.MAP_VIEW))]

ROADS_FILE = "roads.geojson"
#: From this zoom level on the map shows grid cells (``map.js`` reads it from the config).
GRID_MIN_ZOOM = 13
#: The first view of each jurisdiction level (Web Mercator zoom; 12 is about a city).
ZOOM_BY_LEVEL = {"city": 11, "district": 12, "station": 13, "grid": 15}
DEFAULT_ZOOM = 12
EMPTY_COLLECTION = b'{"type":"FeatureCollection","features":[]}'


@dataclass(frozen=True)
class _CachedFile:
    path: Path
    mtime_ns: int
    size: int
    body: bytes


class RoadsCache:
    """The roads file's bytes, read again only when its mtime or size changes.

    The file is validated once per change (it must be a GeoJSON FeatureCollection; a
    broken file is logged and served as empty) and then served as it is, without
    re-encoding: a city's road lines are several MB.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: _CachedFile | None = None

    def get(self, path: Path) -> bytes:
        try:
            st = path.stat()
        except FileNotFoundError:
            return EMPTY_COLLECTION
        cached = self._cached
        if (
            cached is not None and cached.path == path
            and cached.mtime_ns == st.st_mtime_ns and cached.size == st.st_size
        ):
            return cached.body
        with self._lock:
            try:
                body = path.read_bytes()
                doc: Any = json.loads(body)
                if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
                    raise ValueError("not a GeoJSON FeatureCollection")
            except (OSError, ValueError) as exc:
                # A broken file must not break the map: log it once per change.
                log.error("ignoring %s: %s", path, exc)
                body = EMPTY_COLLECTION
            self._cached = _CachedFile(path, st.st_mtime_ns, st.st_size, body)
            return body


def _roads_cache(state: StateDep) -> RoadsCache:
    cache = state.extras.get("map_roads_cache")
    if not isinstance(cache, RoadsCache):
        cache = RoadsCache()
        state.extras["map_roads_cache"] = cache
    return cache


@router.get("/roads", response_class=Response)
def roads(principal: MapViewer, state: StateDep) -> Response:
    """Road lines (GeoJSON, lon/lat) from ``<data_dir>/roads.geojson``; empty if absent."""
    body = _roads_cache(state).get(state.settings.data_dir / ROADS_FILE)
    return Response(
        body,
        media_type="application/geo+json",
        headers={"Cache-Control": "private, max-age=300"},
    )


def _centre(state: StateDep, principal: Principal) -> tuple[list[float], int]:
    """The centroid of the principal's own jurisdiction, else of the city polygon, else
    the configured demo centre."""
    settings = state.settings
    with state.db.unit_of_work(readonly=True, info={"scope": Scope(None)}) as session:
        if principal.jurisdiction is not None:
            try:
                own = auth_service.get_jurisdiction(session, code=principal.jurisdiction)
            except NotFound:
                own = None
            if own is not None:
                return ([own.centroid_lat, own.centroid_lon],
                        ZOOM_BY_LEVEL.get(own.level, DEFAULT_ZOOM))
        cities = auth_service.list_jurisdictions(session, level="city")
        if cities:
            city = cities[0]
            return [city.centroid_lat, city.centroid_lon], ZOOM_BY_LEVEL["city"]
    return [settings.demo_center_lat, settings.demo_center_lon], DEFAULT_ZOOM


@router.get("/config")
def config(principal: MapViewer, state: StateDep) -> JSONResponse:
    """``{tile_url, tile_attribution, center: [lat, lon], zoom, grid_min_zoom}``."""
    center, zoom = _centre(state, principal)
    return JSONResponse(
        {
            "tile_url": state.settings.tile_url,
            "tile_attribution": state.settings.tile_attribution,
            "center": center,
            "zoom": zoom,
            "grid_min_zoom": GRID_MIN_ZOOM,
        }
    )
