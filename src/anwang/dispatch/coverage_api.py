"""Posts, demand layers and response-circle coverage (mounted under ``/api/v1``).

Reading posts needs ``map.view``; reading coverage (shares, isochrones, plans) needs
``coverage.plan`` or ``incidents.manage``; changing posts and demand layers and
computing a re-siting need ``coverage.plan``. Routes are plain ``def`` (FastAPI's thread
pool): a siting run may take its whole time limit without holding the event loop.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from anwang.auth.deps import CurrentPrincipal, DbSession, Principal, StateDep, require
from anwang.auth.permissions import Action
from anwang.core.errors import BadRequest, PermissionDenied, ValidationFailed
from anwang.dispatch import posts as posts_service
from anwang.dispatch import siting
from anwang.dispatch.api import graph_of, maybe_graph
from anwang.dispatch.models import Post
from anwang.dispatch.schemas import OptimizeRequest, PostCreate, PostOut, PostUpdate

router = APIRouter(tags=["coverage"])

MapViewer = Annotated[Principal, Depends(require(Action.MAP_VIEW))]
Planner = Annotated[Principal, Depends(require(Action.COVERAGE_PLAN))]
MAX_CSV_BYTES = 32 * 2**20


async def _coverage_reader(principal: CurrentPrincipal) -> Principal:
    if not (principal.can(Action.COVERAGE_PLAN) or principal.can(Action.INCIDENTS_MANAGE)):
        raise PermissionDenied(f"The role {principal.role} may not see coverage.",
                               code="anwang.auth.permission_denied")
    return principal


CoverageReader = Annotated[Principal, Depends(_coverage_reader)]


def post_out(p: Post) -> PostOut:
    return PostOut(
        id=p.id, code=p.code, name=p.name, kind=p.kind, circle=p.circle, lat=p.lat, lon=p.lon,
        h3_cell=p.h3_cell, staffed_hours=posts_service.format_staffed(p.staffed_from, p.staffed_to),
        active=p.active, jurisdiction=p.jurisdiction_code,
    )


async def _csv_text(request: Request, principal: Planner) -> str:
    """The body of a ``text/csv`` upload (after the caller was authenticated)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "text/csv":
        raise BadRequest("send the file as text/csv", code="anwang.bad_request")
    raw = await request.body()
    if len(raw) > MAX_CSV_BYTES:
        raise ValidationFailed.on("file", f"larger than {MAX_CSV_BYTES // 2**20} MB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed.on("file", "must be UTF-8 text") from None


CsvText = Annotated[str, Depends(_csv_text)]


# --- posts ----------------------------------------------------------------------------


@router.get("/posts", response_model=list[PostOut])
def list_posts(
    principal: MapViewer,
    session: DbSession,
    kind: Literal["quick_response", "key_location"] | None = None,
    active: bool | None = True,
) -> list[PostOut]:
    """Posts in your jurisdiction (active ones unless ``active`` says otherwise)."""
    return [post_out(p) for p in posts_service.list_posts(session, kind=kind, active=active)]


@router.get("/posts.csv")
def export_posts(principal: MapViewer, session: DbSession) -> Response:
    rows = posts_service.list_posts(session, active=True)
    return Response(posts_service.posts_csv(rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="posts.csv"'})


@router.post("/posts", response_model=PostOut, status_code=201)
def create_post(
    body: PostCreate, principal: Planner, session: DbSession, state: StateDep
) -> PostOut:
    """A new post; its location must lie on the road network's area."""
    post = posts_service.create_post(
        session, data=posts_service.PostInput(
            code=body.code, name=body.name, kind=body.kind.value, lat=body.lat, lon=body.lon,
            circle=body.circle, staffed_hours=body.staffed_hours),
        actor=principal.name, actor_role=principal.role, loaded=maybe_graph(state))
    return post_out(post)


@router.patch("/posts/{post_id}", response_model=PostOut)
def update_post(
    post_id: str, body: PostUpdate, principal: Planner, session: DbSession, state: StateDep
) -> PostOut:
    """Change fields of a post; ``"active": false`` retires it."""
    changes = body.model_dump(exclude_unset=True)
    if "kind" in changes and changes["kind"] is not None:
        changes["kind"] = str(changes["kind"])
    return post_out(posts_service.update_post(
        session, post_id=post_id, changes={k: v for k, v in changes.items() if v is not None
                                           or k == "circle"},
        actor=principal.name, actor_role=principal.role, loaded=maybe_graph(state)))


@router.post("/posts/import")
def import_posts(
    principal: Planner, text: CsvText, session: DbSession, state: StateDep
) -> dict[str, Any]:
    """Upsert posts from CSV (``code,name,kind,lat,lon[,circle,staffed_hours]``); bad
    lines are listed in ``errors`` and the good ones kept."""
    r = posts_service.import_posts_csv(session, text=text, actor=principal.name,
                                       actor_role=principal.role, loaded=maybe_graph(state))
    return {"created": r.created, "updated": r.updated, "unchanged": r.unchanged,
            "errors": r.errors}


# --- demand ---------------------------------------------------------------------------


@router.get("/coverage/demand")
def demand_layers(principal: CoverageReader, session: DbSession) -> list[dict[str, Any]]:
    return posts_service.list_layers(session)


@router.put("/coverage/demand/{layer}")
async def put_demand_layer(
    layer: str, request: Request, principal: Planner, state: StateDep
) -> dict[str, Any]:
    """Replace a demand layer: ``text/csv`` (``lat,lon[,weight,label]``) or JSON
    ``{"points": [{"lat", "lon", "weight", "label"}, ...]}``. Bad points are listed in
    ``errors``; the others are stored."""
    posts_service.check_layer(layer)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "text/csv":
        rows, errors = posts_service.parse_demand_csv(await _csv_text(request))
    elif ctype == "application/json":
        try:
            doc = await request.json()
        except ValueError:
            raise BadRequest("the body is not JSON") from None
        points = doc.get("points") if isinstance(doc, dict) else None
        if not isinstance(points, list):
            raise ValidationFailed.on("points", "must be a list of points")
        rows, errors = [], []
        for i, pt in enumerate(points):
            try:
                if not isinstance(pt, dict):
                    raise ValidationFailed.on("point", "must be an object")
                rows.append(posts_service.check_demand_row(
                    pt.get("lat"), pt.get("lon"), pt.get("weight", 1), pt.get("label")))
            except ValidationFailed as exc:
                errors += [{"index": i, **e.as_dict()} for e in exc.errors]
    else:
        raise BadRequest("send text/csv or application/json")

    def store() -> int:
        with state.db.unit_of_work(info={"scope": principal.scope, "principal": principal}) as s:
            return posts_service.replace_demand_layer(
                s, layer=layer, rows=rows, actor=principal.name, actor_role=principal.role,
                rejected=len(errors))

    from starlette.concurrency import run_in_threadpool

    stored = await run_in_threadpool(store)
    return {"layer": layer, "stored": stored, "errors": errors}


# --- coverage -------------------------------------------------------------------------


@router.get("/coverage/analysis")
def analysis(
    principal: CoverageReader,
    session: DbSession,
    state: StateDep,
    minutes: Annotated[str | None, Query(max_length=40)] = None,
    layer: Annotated[str | None, Query(max_length=40)] = None,
    kind: Literal["quick_response", "key_location", "all"] = "quick_response",
) -> dict[str, Any]:
    """Share of demand reached within each threshold (default 1, 3, 5 minutes) by the
    active posts, city-wide and per district, and per post."""
    return siting.analyze(session, graph_of(state), minutes=siting.parse_minutes(minutes),
                          layer=layer, kind=None if kind == "all" else kind)


@router.get("/coverage/isochrones")
def isochrones(
    principal: CoverageReader,
    session: DbSession,
    state: StateDep,
    minutes: Annotated[str | None, Query(max_length=40)] = None,
    post: Annotated[str | None, Query(max_length=40)] = None,
    combined: bool = False,
    kind: Literal["quick_response", "key_location", "all"] = "quick_response",
) -> dict[str, Any]:
    """Reachable areas (GeoJSON) per post and threshold, or all posts ``combined``."""
    return siting.isochrones(session, graph_of(state), minutes=siting.parse_minutes(minutes),
                             post_id=post, combined=combined,
                             kind=None if kind == "all" else kind)


@router.post("/coverage/optimize")
def optimize(
    body: OptimizeRequest, principal: Planner, session: DbSession, state: StateDep
) -> dict[str, Any]:
    """Re-site ``p`` quick-response posts for the ``minutes`` threshold (MCLP, exact
    with a time limit) and compare with today's siting; the plan is stored."""
    return siting.optimize(
        session, graph_of(state), p=body.p, minutes=body.minutes, keep=body.keep,
        layer=body.layer, generate=body.generate, max_candidates=body.max_candidates,
        imported=[(float(c[0]), float(c[1])) for c in body.candidates],
        backup_weight=body.backup_weight, time_limit_s=body.time_limit_s,
        actor=principal.name, actor_role=principal.role)


@router.get("/coverage/plans")
def plans(principal: CoverageReader, session: DbSession) -> list[dict[str, Any]]:
    return [{"id": p.id, "created_at": p.created_at, "created_by": p.created_by,
             "minutes": p.minutes, "p": p.p,
             "covered_share_before": p.result.get("covered_share_before"),
             "covered_share_after": p.result.get("covered_share_after"),
             "gap": p.result.get("gap")}
            for p in siting.latest_plans(session)]


@router.get("/coverage/plans/{plan_id}")
def plan(
    plan_id: str, principal: CoverageReader, session: DbSession,
    format: Literal["json", "geojson", "csv"] = "json",  # noqa: A002
) -> Any:
    """A stored plan as JSON, GeoJSON (sites before and after, moves, areas) or CSV."""
    p = siting.get_plan(session, plan_id=plan_id)
    if format == "geojson":
        return Response(
            _dumps(siting.plan_geojson(p)), media_type="application/geo+json",
            headers={"Content-Disposition": f'attachment; filename="siting-{p.id}.geojson"'})
    if format == "csv":
        return Response(
            siting.plan_csv(p), media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="siting-{p.id}.csv"'})
    return {"id": p.id, "created_at": p.created_at, "created_by": p.created_by,
            "params": p.params, **p.result}


def _dumps(doc: Any) -> str:
    import json

    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
