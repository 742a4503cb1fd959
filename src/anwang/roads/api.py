"""Routes over the city's road network (mounted under ``/api/v1``).

``GET /roads/route?from=lat,lon&to=lat,lon[&by=time|distance][&hour=0-23]`` answers the
route's ``distance_m``, ``duration_s`` and GeoJSON ``geometry`` (a LineString in
lon/lat order). A malformed or far-away point is a 422 naming ``from`` or ``to``; two
points with no route between them are a 422 ``anwang.roads.unreachable``; without a
loaded road network the answer is 503 ``anwang.roads.no_graph``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from anwang.auth.deps import Principal, StateDep, require
from anwang.auth.permissions import Action
from anwang.roads import service

router = APIRouter(prefix="/roads", tags=["roads"])

MapViewer = Annotated[Principal, Depends(require(Action.MAP_VIEW))]


@router.get("/route")
def get_route(
    principal: MapViewer,
    state: StateDep,
    from_: Annotated[str | None, Query(alias="from", max_length=64)] = None,
    to: Annotated[str | None, Query(max_length=64)] = None,
    by: Literal["time", "distance"] = "time",
    hour: Annotated[int | None, Query(ge=0, le=23)] = None,
) -> dict[str, Any]:
    """The fastest (``by=time``, default) or shortest route between two points."""
    origin = service.parse_latlon(from_, "from")
    destination = service.parse_latlon(to, "to")
    loaded = service.load(state.settings.data_dir)
    r = service.route_between(loaded, origin, destination, by=by, hour=hour)
    return {
        "distance_m": round(r.distance_m, 1),
        "duration_s": round(r.duration_s, 1),
        "by": r.by,
        "hour": r.hour,
        "snap_m": {"from": round(r.snap_m[0], 1), "to": round(r.snap_m[1], 1)},
        "geometry": r.geometry,
    }
