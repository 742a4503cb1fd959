"""Posts (quick-response points and patrol key locations) and demand layers.

Posts are created, edited and retired one by one or imported from CSV (upsert by
``code``: re-importing a file changes nothing the second time). A post belongs to the
jurisdiction its location lies in; creating or moving one outside the caller's scope is
refused. Every change is audited (``anwang.dispatch.post.*``).

A **demand layer** is a named set of weighted points — population, past incidents —
that coverage is measured against. Importing a layer replaces it as a whole, so a
retried import stores nothing twice. In CSV and JSON imports each bad row is rejected
with its line and field, and every valid row is kept.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import h3
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from anwang.auth import service as auth_service
from anwang.core import audit
from anwang.core.db import publish_after_commit
from anwang.core.errors import Conflict, FieldError, NotFound, PermissionDenied, ValidationFailed
from anwang.core.events import new_id, utcnow
from anwang.core.scope import current_scope
from anwang.dispatch import events
from anwang.dispatch.config import PostKind
from anwang.dispatch.models import DemandPoint, Post
from anwang.roads.service import LoadedGraph, snap_point

H3_RESOLUTION: Final = 9
LAYER_NAME = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,39}$")
POST_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")
MAX_DEMAND_POINTS: Final = 500_000


# --- staffed hours ----------------------------------------------------------------


def parse_staffed(value: str | None, field_name: str = "staffed_hours") -> tuple[int, int]:
    """``"HH:MM-HH:MM"`` (local time; an end before the start wraps past midnight) or
    ``""``/``"24h"`` for round the clock → (from, to) minutes of the day."""
    if value is None or value.strip().lower() in ("", "24h", "00:00-24:00"):
        return 0, 1440
    parts = value.strip().split("-")
    if len(parts) != 2:
        raise ValidationFailed.on(field_name, "must be 'HH:MM-HH:MM' or '24h'")
    out = []
    for part in parts:
        m = _HHMM.match(part.strip())
        if m is None or (m.group(1) == "24" and m.group(2) != "00"):
            raise ValidationFailed.on(field_name, "must be 'HH:MM-HH:MM' or '24h'")
        out.append(int(m.group(1)) * 60 + int(m.group(2)))
    start, end = out
    if start == 1440:
        start = 0
    if start == end:
        raise ValidationFailed.on(field_name, "start and end are the same; use '24h'")
    return start, end


def format_staffed(start: int, end: int) -> str:
    if start == 0 and end == 1440:
        return "24h"
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


def staffed_at(post: Post, minute_of_day: int) -> bool:
    """Whether the post is staffed at that minute of the local day."""
    a, b = post.staffed_from, post.staffed_to
    if a < b:
        return a <= minute_of_day < b
    return minute_of_day >= a or minute_of_day < b


# --- posts ------------------------------------------------------------------------


@dataclass(frozen=True)
class PostInput:
    code: str
    name: str
    kind: str
    lat: float
    lon: float
    circle: str | None = None
    staffed_hours: str | None = None


def check_point(lat: float, lon: float, field_name: str = "lat/lon") -> None:
    if not (
        isinstance(lat, int | float) and isinstance(lon, int | float)
        and math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180
    ):
        raise ValidationFailed.on(field_name, "not a valid coordinate")


def _on_network(loaded: LoadedGraph | None, lat: float, lon: float) -> None:
    if loaded is not None:
        snap_point(loaded, lat, lon, field_name="lat/lon")


def _validate(data: PostInput) -> tuple[int, int]:
    if not POST_CODE.match(data.code or ""):
        raise ValidationFailed.on("code", "1-40 letters, digits, '.', '_' or '-'")
    if not (data.name or "").strip() or len(data.name) > 120:
        raise ValidationFailed.on("name", "must be 1-120 characters")
    try:
        PostKind(data.kind)
    except ValueError:
        raise ValidationFailed.on("kind", "one of " + ", ".join(PostKind)) from None
    if data.circle is not None and len(data.circle) > 60:
        raise ValidationFailed.on("circle", "at most 60 characters")
    check_point(data.lat, data.lon)
    return parse_staffed(data.staffed_hours)


def locate_in_scope(session: Session, *, lat: float, lon: float, field_name: str) -> str | None:
    """The jurisdiction of a point; refused (403) when it lies outside the caller's."""
    code = auth_service.locate(session, lon=lon, lat=lat)
    scope = current_scope(session)
    if scope is not None and not scope.citywide and not scope.contains(code):
        raise PermissionDenied(
            f"{field_name}: the location lies outside your jurisdiction",
            code="anwang.dispatch.outside_jurisdiction",
            errors=[FieldError(field_name, "outside your jurisdiction")],
        )
    return code


def _post_data(p: Post) -> dict[str, Any]:
    return {
        "code": p.code, "name": p.name, "kind": p.kind, "circle": p.circle,
        "lat": p.lat, "lon": p.lon, "staffed_hours": format_staffed(p.staffed_from, p.staffed_to),
        "active": p.active,
    }


def _publish(session: Session, p: Post, change: str, actor: str | None) -> None:
    publish_after_commit(session, events.make(
        events.POST_CHANGED,
        {"post_id": p.id, "code": p.code, "kind": p.kind, "change": change,
         "position": [p.lat, p.lon], "active": p.active, "summary": f"{p.code} {p.name}"},
        jurisdiction=p.jurisdiction_code, actor=actor,
    ))


def get_post(session: Session, *, post_id: str) -> Post:
    """A post by id or code, within the caller's scope (else 404)."""
    post = session.get(Post, post_id)
    if post is not None:
        # session.get may answer from the identity map, which the scope hook does not see.
        scope = current_scope(session)
        if scope is not None and not scope.contains(post.jurisdiction_code):
            post = None
    if post is None:
        post = session.scalars(select(Post).where(Post.code == post_id)).first()
    if post is None:
        raise NotFound(f"no post {post_id!r} in your jurisdiction",
                       code="anwang.dispatch.post_not_found")
    return post


def list_posts(
    session: Session, *, kind: str | None = None, active: bool | None = True
) -> Sequence[Post]:
    stmt = select(Post).order_by(Post.code)
    if kind is not None:
        stmt = stmt.where(Post.kind == kind)
    if active is not None:
        stmt = stmt.where(Post.active.is_(active))
    return session.scalars(stmt).all()


def create_post(
    session: Session, *, data: PostInput, actor: str, actor_role: str | None = None,
    now: datetime | None = None, loaded: LoadedGraph | None = None,
) -> Post:
    """A new post. With the road graph (``loaded``) its location must lie on the
    network's area (422 on ``lat/lon``), so that it can cover something."""
    start, end = _validate(data)
    _on_network(loaded, data.lat, data.lon)
    if session.scalar(select(Post.id).where(Post.code == data.code).execution_options(
            skip_scope=True)) is not None:
        raise Conflict(f"a post with the code {data.code!r} exists",
                       code="anwang.dispatch.post_exists")
    code = locate_in_scope(session, lat=data.lat, lon=data.lon, field_name="lat/lon")
    now = now or utcnow()
    post = Post(
        id=new_id(), code=data.code, name=data.name.strip(), kind=data.kind, circle=data.circle,
        lat=float(data.lat), lon=float(data.lon),
        h3_cell=h3.latlng_to_cell(data.lat, data.lon, H3_RESOLUTION),
        staffed_from=start, staffed_to=end, active=True, created_at=now, updated_at=now,
        jurisdiction_code=code,
    )
    session.add(post)
    session.flush()
    audit.record(session, "anwang.dispatch.post.created", actor=actor, actor_role=actor_role,
                 subject=f"post:{post.id}", jurisdiction=code, data=_post_data(post))
    _publish(session, post, "created", actor)
    return post


def update_post(
    session: Session, *, post_id: str, changes: Mapping[str, Any], actor: str,
    actor_role: str | None = None, now: datetime | None = None,
    loaded: LoadedGraph | None = None,
) -> Post:
    """Change a post's name, kind, circle, location, staffed hours or ``active``."""
    post = get_post(session, post_id=post_id)
    before = _post_data(post)
    merged = PostInput(
        code=post.code,
        name=changes.get("name", post.name),
        kind=changes.get("kind", post.kind),
        lat=changes.get("lat", post.lat),
        lon=changes.get("lon", post.lon),
        circle=changes.get("circle", post.circle),
        staffed_hours=changes.get(
            "staffed_hours", format_staffed(post.staffed_from, post.staffed_to)),
    )
    start, end = _validate(merged)
    if (merged.lat, merged.lon) != (post.lat, post.lon):
        _on_network(loaded, merged.lat, merged.lon)
        post.jurisdiction_code = locate_in_scope(
            session, lat=merged.lat, lon=merged.lon, field_name="lat/lon")
        post.lat, post.lon = float(merged.lat), float(merged.lon)
        post.h3_cell = h3.latlng_to_cell(post.lat, post.lon, H3_RESOLUTION)
    post.name, post.kind, post.circle = merged.name.strip(), merged.kind, merged.circle
    post.staffed_from, post.staffed_to = start, end
    if "active" in changes:
        post.active = bool(changes["active"])
    after = _post_data(post)
    if after == before:
        return post
    post.updated_at = now or utcnow()
    session.flush()
    audit.record(session, "anwang.dispatch.post.updated", actor=actor, actor_role=actor_role,
                 subject=f"post:{post.id}", jurisdiction=post.jurisdiction_code,
                 data={k: after[k] for k in after if after[k] != before[k]})
    _publish(session, post, "updated", actor)
    return post


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


POST_COLUMNS: Final = ("code", "name", "kind", "lat", "lon", "circle", "staffed_hours")


def import_posts_csv(
    session: Session, *, text: str, actor: str, actor_role: str | None = None,
    now: datetime | None = None, loaded: LoadedGraph | None = None,
) -> ImportResult:
    """Upsert posts from CSV (columns :data:`POST_COLUMNS`; ``circle`` and
    ``staffed_hours`` optional). Each bad line is reported and skipped, in a savepoint
    of its own, and every good line kept."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    have = reader.fieldnames or []
    missing = [c for c in ("code", "name", "kind", "lat", "lon") if c not in have]
    if missing:
        raise ValidationFailed.on("file", "missing columns: " + ", ".join(missing))
    result = ImportResult()
    for line, row in enumerate(reader, start=2):
        try:
            with session.begin_nested():
                data = PostInput(
                    code=(row.get("code") or "").strip(), name=(row.get("name") or "").strip(),
                    kind=(row.get("kind") or "").strip(), lat=_float(row.get("lat"), "lat"),
                    lon=_float(row.get("lon"), "lon"),
                    circle=(row.get("circle") or "").strip() or None,
                    staffed_hours=(row.get("staffed_hours") or "").strip() or None,
                )
                existing = session.scalars(
                    select(Post).where(Post.code == data.code)).first()
                if existing is None:
                    create_post(session, data=data, actor=actor, actor_role=actor_role, now=now,
                                loaded=loaded)
                    result.created += 1
                else:
                    before = _post_data(existing)
                    update_post(session, post_id=existing.id, changes={
                        "name": data.name, "kind": data.kind, "lat": data.lat, "lon": data.lon,
                        "circle": data.circle, "staffed_hours": data.staffed_hours,
                        "active": True}, actor=actor, actor_role=actor_role, now=now,
                        loaded=loaded)
                    if _post_data(existing) == before:
                        result.unchanged += 1
                    else:
                        result.updated += 1
        except (ValidationFailed, Conflict, PermissionDenied) as exc:
            errs = exc.errors or [FieldError("row", exc.detail)]
            result.errors += [{"line": line, **e.as_dict()} for e in errs]
    return result


def _float(value: str | None, field_name: str) -> float:
    try:
        out = float(value) if value is not None else math.nan
    except ValueError:
        out = math.nan
    if not math.isfinite(out):
        raise ValidationFailed.on(field_name, "must be a number")
    return out


def posts_csv(posts: Iterable[Post]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(POST_COLUMNS)
    for p in posts:
        w.writerow([p.code, p.name, p.kind, f"{p.lat:.6f}", f"{p.lon:.6f}", p.circle or "",
                    format_staffed(p.staffed_from, p.staffed_to)])
    return buf.getvalue()


# --- demand layers ----------------------------------------------------------------


@dataclass(frozen=True)
class DemandRow:
    lat: float
    lon: float
    weight: float
    label: str | None = None


def check_layer(layer: str) -> str:
    if not LAYER_NAME.match(layer or ""):
        raise ValidationFailed.on("layer", "1-40 lower-case letters, digits, '_', '.', '-'")
    return layer


def parse_demand_csv(text: str) -> tuple[list[DemandRow], list[dict[str, Any]]]:
    """Rows of a demand CSV (``lat``, ``lon``, optional ``weight`` (default 1) and
    ``label``), and the errors of the bad lines."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = [c for c in ("lat", "lon") if c not in (reader.fieldnames or [])]
    if missing:
        raise ValidationFailed.on("file", "missing columns: " + ", ".join(missing))
    rows: list[DemandRow] = []
    errors: list[dict[str, Any]] = []
    for line, raw in enumerate(reader, start=2):
        try:
            rows.append(check_demand_row(
                raw.get("lat"), raw.get("lon"), raw.get("weight") or "1", raw.get("label")))
        except ValidationFailed as exc:
            errors += [{"line": line, **e.as_dict()} for e in exc.errors]
    return rows, errors


def check_demand_row(lat: Any, lon: Any, weight: Any, label: Any = None) -> DemandRow:
    la, lo = _float(None if lat is None else str(lat), "lat"), _float(
        None if lon is None else str(lon), "lon")
    check_point(la, lo)
    w = _float(None if weight is None else str(weight), "weight")
    if w < 0:
        raise ValidationFailed.on("weight", "must not be negative")
    text = str(label).strip()[:120] if label not in (None, "") else None
    return DemandRow(la, lo, w, text)


def replace_demand_layer(
    session: Session, *, layer: str, rows: Sequence[DemandRow], actor: str,
    actor_role: str | None = None, rejected: int = 0,
) -> int:
    """Replace the points of ``layer`` with ``rows`` (one bulk insert); returns the count."""
    check_layer(layer)
    if len(rows) > MAX_DEMAND_POINTS:
        raise ValidationFailed.on("points", f"at most {MAX_DEMAND_POINTS:,} points per layer")
    session.execute(delete(DemandPoint).where(DemandPoint.layer == layer))
    if rows:
        session.execute(insert(DemandPoint), [
            {"layer": layer, "lat": r.lat, "lon": r.lon, "weight": r.weight, "label": r.label}
            for r in rows
        ])
    audit.record(session, "anwang.dispatch.demand.imported", actor=actor, actor_role=actor_role,
                 subject=f"demand:{layer}", result_count=len(rows),
                 data={"layer": layer, "points": len(rows), "rejected": rejected,
                       "total_weight": round(sum(r.weight for r in rows), 3)})
    return len(rows)


def list_layers(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(
        select(DemandPoint.layer, func.count(), func.sum(DemandPoint.weight))
        .group_by(DemandPoint.layer).order_by(DemandPoint.layer)
    ).all()
    return [{"layer": r[0], "points": int(r[1]), "total_weight": float(r[2] or 0)} for r in rows]


def layer_version(session: Session, layer: str) -> tuple[int, int, float] | None:
    """(count, max id, total weight) of a layer — changes whenever it is replaced."""
    row = session.execute(
        select(func.count(), func.max(DemandPoint.id), func.sum(DemandPoint.weight))
        .where(DemandPoint.layer == layer)
    ).one()
    if not row[0]:
        return None
    return int(row[0]), int(row[1]), float(row[2] or 0.0)


def layer_points(session: Session, layer: str) -> tuple[list[float], list[float], list[float]]:
    rows = session.execute(
        select(DemandPoint.lat, DemandPoint.lon, DemandPoint.weight)
        .where(DemandPoint.layer == layer).order_by(DemandPoint.id)
    ).all()
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
