"""Use cases of the community package: the registry, rules, health and device input.

The package's SQL is split by role: this module holds the registry (communities and
devices, their credentials and CSV import), the rule sets, device health and the HTTP
entry of device messages; :mod:`anwang.communities.intake` the hot path every message
takes; :mod:`anwang.communities.alarms` the alarms' lifecycle and the scans. Other
packages call this module. Functions are keyword-only, take the session and never
commit; every change people make is audited in its transaction.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from shapely.geometry import shape  # type: ignore[import-untyped]
from sqlalchemy import case, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from anwang.auth import service as auth_service
from anwang.communities import adapters, credentials, intake
from anwang.communities.adapters import Reason
from anwang.communities.alarms import OPEN_STATUSES
from anwang.communities.models import (
    Community,
    Device,
    DeviceAlarm,
    DeviceEvent,
    DeviceRejection,
    DeviceRuleSet,
    DeviceSample,
    DeviceStatus,
)
from anwang.communities.rules import DEFAULT_RULES, DeviceKind, RuleError, merge_rules
from anwang.communities.schemas import (
    CommunityCreate,
    CommunityUpdate,
    DeviceCreate,
    DeviceUpdate,
)
from anwang.core import audit
from anwang.core.db import after_commit
from anwang.core.errors import (
    Conflict,
    FieldError,
    NotFound,
    ValidationFailed,
)
from anwang.core.events import utcnow
from anwang.core.scope import current_scope

#: Most rows in one CSV import.
MAX_IMPORT_ROWS = 20_000
#: Battery level under which the health table counts a device as low.
LOW_BATTERY_PCT = 20.0


# --- communities ----------------------------------------------------------------------


def _outline(polygon: dict[str, Any], field: str = "polygon") -> tuple[str, float, float]:
    """The outline as GeoJSON text and a point inside it (lat, lon)."""
    if polygon.get("type") not in ("Polygon", "MultiPolygon"):
        raise ValidationFailed.on(field, "a GeoJSON Polygon or MultiPolygon")
    try:
        geom = shape(polygon)
    except Exception:  # noqa: BLE001 - shapely raises several types for bad input
        raise ValidationFailed.on(field, "not a valid GeoJSON polygon") from None
    if geom.is_empty or not geom.is_valid:
        raise ValidationFailed.on(field, "the polygon is empty or crosses itself")
    minx, miny, maxx, maxy = geom.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise ValidationFailed.on(field, "coordinates must be lon/lat")
    p = geom.representative_point()
    return json.dumps(polygon, separators=(",", ":")), p.y, p.x


def _grid_for(session: Session, grid: str | None, lat: float, lon: float) -> str | None:
    if grid is not None:
        try:
            auth_service.get_jurisdiction(session, code=grid)
        except NotFound:
            raise ValidationFailed.on("grid", f"no jurisdiction has the code {grid!r}") from None
        return grid
    return auth_service.locate(session, lon=lon, lat=lat)


def _check_in_scope(session: Session, code: str | None, field: str) -> None:
    scope = current_scope(session)
    if scope is not None and not scope.contains(code):
        raise ValidationFailed.on(field, "outside your jurisdiction")


def get_community(session: Session, *, code: str) -> Community:
    c = session.scalars(select(Community).where(Community.code == code)).first()
    if c is None:
        raise NotFound(f"no community {code!r} in your jurisdiction",
                       code="anwang.communities.community_not_found")
    return c


def list_communities(session: Session, *, q: str | None = None,
                     active: bool | None = None) -> list[Community]:
    stmt = select(Community).order_by(Community.code)
    if q:
        like = f"%{q}%"
        stmt = stmt.where(Community.name.like(like) | Community.code.like(like))
    if active is not None:
        stmt = stmt.where(Community.active.is_(active))
    return list(session.scalars(stmt))


def create_community(session: Session, *, data: CommunityCreate, actor: str,
                     actor_role: str | None = None) -> Community:
    polygon, lat, lon = _outline(data.polygon)
    grid = _grid_for(session, data.grid, lat, lon)
    _check_in_scope(session, grid, "grid")
    if session.get(Community, data.code) is not None:
        raise Conflict(f"a community {data.code!r} exists already",
                       code="anwang.communities.community_exists")
    now = utcnow()
    c = Community(
        code=data.code, name=data.name, polygon=polygon, center_lat=lat, center_lon=lon,
        address=data.address, jurisdiction_code=grid,
        contacts=[x.model_dump() for x in data.contacts], active=True,
        created_at=now, updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(c)
    except IntegrityError:
        raise Conflict(f"a community {data.code!r} exists already",
                       code="anwang.communities.community_exists") from None
    audit.record(session, "anwang.communities.community.created", actor=actor,
                 actor_role=actor_role, subject=c.code, jurisdiction=grid,
                 data={"name": c.name, "grid": grid})
    _directory_changed(session)
    return c


def update_community(session: Session, *, code: str, changes: CommunityUpdate, actor: str,
                     actor_role: str | None = None) -> Community:
    c = get_community(session, code=code)
    given = changes.model_dump(exclude_unset=True)
    if "polygon" in given and changes.polygon is not None:
        c.polygon, c.center_lat, c.center_lon = _outline(changes.polygon)
    if "grid" in given or "polygon" in given:
        grid = _grid_for(session, changes.grid if "grid" in given else None,
                         c.center_lat, c.center_lon)
        _check_in_scope(session, grid, "grid")
        if grid != c.jurisdiction_code:
            c.jurisdiction_code = grid
            now = utcnow()
            for d in session.scalars(select(Device).where(Device.community_code == code)):
                d.jurisdiction_code = grid
                d.updated_at = now
    for name in ("name", "address", "active"):
        if name in given and given[name] is not None:
            setattr(c, name, given[name])
    if "contacts" in given and changes.contacts is not None:
        c.contacts = [x.model_dump() for x in changes.contacts]
    c.updated_at = utcnow()
    audit.record(session, "anwang.communities.community.updated", actor=actor,
                 actor_role=actor_role, subject=c.code, jurisdiction=c.jurisdiction_code,
                 data={"fields": sorted(given)})
    _directory_changed(session)
    return c


# --- devices ----------------------------------------------------------------------------


def get_device(session: Session, *, device_id: str) -> Device:
    d = session.scalars(select(Device).where(Device.id == device_id)).first()
    if d is None:
        raise NotFound(f"no device {device_id!r} in your jurisdiction",
                       code="anwang.communities.device_not_found")
    return d


def list_devices(
    session: Session, *, community: str | None = None, kind: str | None = None,
    active: bool | None = None, limit: int = 1000, after: str | None = None,
) -> list[Device]:
    stmt = select(Device).order_by(Device.id).limit(limit)
    if community:
        stmt = stmt.where(Device.community_code == community)
    if kind:
        stmt = stmt.where(Device.kind == kind)
    if active is not None:
        stmt = stmt.where(Device.active.is_(active))
    if after:
        stmt = stmt.where(Device.id > after)
    return list(session.scalars(stmt))


def _check_adapter(kind: str, adapter: str) -> None:
    a = adapters.get(adapter)
    if a is None:
        raise ValidationFailed.on("adapter", f"one of {', '.join(sorted(adapters.adapters()))}")
    if kind not in a.KINDS:
        raise ValidationFailed.on("adapter", f"{adapter} does not speak for a {kind}")


def create_device(session: Session, *, data: DeviceCreate, actor: str,
                  actor_role: str | None = None, now: datetime | None = None,
                  audit_it: bool = True) -> tuple[Device, str]:
    """Register a device; returns it and its key (shown once). The device joins its
    community's jurisdiction, and is watched from now on: if it never reports, it goes
    offline after ``3 × heartbeat_s`` like any silent device."""
    now = now or utcnow()
    community = get_community(session, code=data.community)
    _check_adapter(data.kind, data.adapter)
    if session.get(Device, data.id) is not None:
        raise Conflict(f"a device {data.id!r} exists already",
                       code="anwang.communities.device_exists")
    key = data.credential or credentials.new_key()
    device = Device(
        id=data.id, kind=str(data.kind), vendor_model=data.vendor_model, adapter=data.adapter,
        community_code=community.code, lat=data.lat, lon=data.lon, building=data.building,
        floor=data.floor, installed_on=data.installed_on, heartbeat_s=data.heartbeat_s,
        credential_hash=credentials.hash_key(key), credential_issued_at=now, active=True,
        jurisdiction_code=community.jurisdiction_code, created_at=now, updated_at=now,
    )
    status = DeviceStatus(
        device_id=data.id, online=True, last_seen_at=None,
        offline_after=now + timedelta(seconds=3 * data.heartbeat_s), offline_since=None,
        last_ts=None, battery_pct=None, metrics=None, rule_state={}, messages=0,
        updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(device)
            session.flush()
            session.add(status)
    except IntegrityError:
        raise Conflict(f"a device {data.id!r} exists already",
                       code="anwang.communities.device_exists") from None
    if audit_it:
        audit.record(session, "anwang.communities.device.registered", actor=actor,
                     actor_role=actor_role, subject=device.id,
                     jurisdiction=device.jurisdiction_code,
                     data={"kind": device.kind, "community": device.community_code,
                           "adapter": device.adapter})
    _directory_changed(session)
    return device, key


def update_device(session: Session, *, device_id: str, changes: DeviceUpdate, actor: str,
                  actor_role: str | None = None) -> Device:
    d = get_device(session, device_id=device_id)
    given = changes.model_dump(exclude_unset=True)
    for name in ("lat", "lon", "heartbeat_s", "adapter", "active"):
        if name in given and given[name] is None:
            raise ValidationFailed.on(name, "may not be null")
    if "adapter" in given:
        _check_adapter(d.kind, given["adapter"])
    if "community" in given and given["community"] is not None:
        c = get_community(session, code=given.pop("community"))
        d.community_code = c.code
        d.jurisdiction_code = c.jurisdiction_code
    given.pop("community", None)
    for name, value in given.items():
        setattr(d, name, value)
    now = utcnow()
    d.updated_at = now
    if "active" in given or "heartbeat_s" in given:
        status = session.get(DeviceStatus, d.id)
        if status is not None:
            if not d.active:
                status.online = None
            elif status.online is None or "heartbeat_s" in given:
                seen = status.last_seen_at or now
                status.online = True if status.online is None else status.online
                status.offline_after = max(seen, now) + timedelta(seconds=3 * d.heartbeat_s)
            status.updated_at = now
    audit.record(session, "anwang.communities.device.updated", actor=actor,
                 actor_role=actor_role, subject=d.id, jurisdiction=d.jurisdiction_code,
                 data={"fields": sorted(changes.model_dump(exclude_unset=True))})
    _directory_changed(session)
    return d


def reissue_credential(session: Session, *, device_id: str, actor: str,
                       actor_role: str | None = None) -> tuple[Device, str]:
    """A new key for the device; the old one stops working at once (HTTP) or when the
    broker's password file is regenerated (MQTT)."""
    d = get_device(session, device_id=device_id)
    key = credentials.new_key()
    d.credential_hash = credentials.hash_key(key)
    d.credential_issued_at = d.updated_at = utcnow()
    audit.record(session, "anwang.communities.device.credential_issued", actor=actor,
                 actor_role=actor_role, subject=d.id, jurisdiction=d.jurisdiction_code)
    _directory_changed(session)
    return d, key


def _directory_changed(session: Session) -> None:
    after_commit(session, intake.directory_for(session).mark_stale)


def _state_of(active: bool, status: DeviceStatus | None) -> str:
    if not active:
        return "inactive"
    if status is None:
        return "never"
    if status.online is False:
        return "offline"
    return "online" if status.last_seen_at is not None else "never"


@dataclass
class DeviceDetail:
    device: Device
    status: DeviceStatus | None
    state: str
    open_alarms: list[DeviceAlarm]
    rejected: dict[str, int]


def device_detail(session: Session, *, device_id: str) -> DeviceDetail:
    d = get_device(session, device_id=device_id)
    status = session.get(DeviceStatus, d.id)
    alarms = list(session.scalars(
        select(DeviceAlarm).where(DeviceAlarm.device_id == d.id,
                                  DeviceAlarm.status.in_(list(OPEN_STATUSES)))
        .order_by(DeviceAlarm.raised_at.desc())
    ))
    rejected = dict(session.execute(
        select(DeviceRejection.reason, DeviceRejection.count)
        .where(DeviceRejection.device_id == d.id)
    ).all())
    return DeviceDetail(d, status, _state_of(d.active, status), alarms,
                        {k: int(v) for k, v in rejected.items()})


def device_samples(session: Session, *, device_id: str, since: datetime,
                   until: datetime | None = None, limit: int = 5000) -> list[DeviceSample]:
    """A device's telemetry between ``since`` and ``until`` (device time), oldest first;
    at most ``limit`` (the newest of them)."""
    get_device(session, device_id=device_id)  # scope check
    stmt = select(DeviceSample).where(DeviceSample.device_id == device_id,
                                      DeviceSample.ts >= since)
    if until is not None:
        stmt = stmt.where(DeviceSample.ts < until)
    rows = list(session.scalars(stmt.order_by(DeviceSample.ts.desc()).limit(limit)))
    rows.reverse()
    return rows


def device_events(session: Session, *, device_id: str, limit: int = 50) -> list[DeviceEvent]:
    get_device(session, device_id=device_id)
    return list(session.scalars(
        select(DeviceEvent).where(DeviceEvent.device_id == device_id)
        .order_by(DeviceEvent.ts.desc()).limit(limit)
    ))


def device_positions(session: Session, *, community: str) -> dict[str, dict[str, Any]]:
    """Where each device of a community hangs (for its map)."""
    rows = session.execute(
        select(Device.id, Device.lat, Device.lon, Device.building, Device.floor)
        .where(Device.community_code == community)
    ).all()
    return {r[0]: {"lat": r[1], "lon": r[2], "building": r[3], "floor": r[4]} for r in rows}


def community_stats(session: Session) -> dict[str, dict[str, int]]:
    """Per community in scope: devices, offline devices and open alarms."""
    scope = current_scope(session)
    t, s = Device.__table__, DeviceStatus.__table__
    conds = [scope.clause(t.c.jurisdiction_code)] if scope is not None else []
    out: dict[str, dict[str, int]] = {}
    for code, total, offline in session.execute(
        select(t.c.community_code, func.count(),
               func.sum(case((s.c.online.is_(False), 1), else_=0)))
        .select_from(t.join(s, s.c.device_id == t.c.id, isouter=True))
        .where(t.c.active.is_(True), *conds).group_by(t.c.community_code)
    ):
        out[code] = {"devices": int(total), "offline": int(offline or 0), "open_alarms": 0}
    for code, n in session.execute(
        select(DeviceAlarm.community_code, func.count())
        .where(DeviceAlarm.status.in_(list(OPEN_STATUSES)))
        .group_by(DeviceAlarm.community_code)
    ):
        out.setdefault(code, {"devices": 0, "offline": 0, "open_alarms": 0})["open_alarms"] = int(n)
    return out


def adapter_names() -> list[str]:
    return sorted(adapters.adapters())


def alarm_history(session: Session, *, alarm_id: str) -> list[audit.AuditEntry]:
    """The audit entries of one alarm, oldest first: its timeline."""
    return list(session.scalars(
        select(audit.AuditEntry).where(audit.AuditEntry.subject == alarm_id)
        .order_by(audit.AuditEntry.seq)
    ))


# --- CSV import -----------------------------------------------------------------------

IMPORT_COLUMNS = ("id", "kind", "community", "lat", "lon", "adapter", "vendor_model",
                  "building", "floor", "installed_on", "heartbeat_s")


@dataclass
class ImportResult:
    rows: list[dict[str, Any]]
    created: int = 0
    updated: int = 0
    rejected: int = 0


def import_devices(session: Session, *, text: str, actor: str,
                   actor_role: str | None = None) -> ImportResult:
    """Register or update devices from CSV (header row; columns :data:`IMPORT_COLUMNS`,
    ``id``, ``kind``, ``community``, ``lat``, ``lon`` required). Each row stands alone: a
    bad row is reported with its field and reason, every good row is kept. A row whose
    id exists updates that device (its key is kept); a new device gets a key, returned
    once. Importing the same file twice changes nothing the second time."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in ("id", "kind", "community", "lat", "lon") if c not in header]
    if missing:
        raise ValidationFailed.on("header", f"missing column(s): {', '.join(missing)}")
    unknown = [h for h in header if h not in IMPORT_COLUMNS]
    if unknown:
        raise ValidationFailed.on("header", f"unknown column(s): {', '.join(unknown)}")
    result = ImportResult(rows=[])
    created: list[str] = []
    for n, raw in enumerate(reader, start=2):
        if n - 1 > MAX_IMPORT_ROWS:
            raise ValidationFailed.on("rows", f"at most {MAX_IMPORT_ROWS} rows per import")
        row = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in raw.items()
               if k is not None}
        values = {k: v for k, v in row.items() if v not in ("", None)}
        device_id = values.get("id")
        try:
            with session.begin_nested():
                status, key = _import_row(session, values, actor, actor_role)
        except ValidationError as exc:
            errors = [{"field": ".".join(str(p) for p in e["loc"]) or "row",
                       "reason": str(e["msg"])} for e in exc.errors()]
            result.rows.append({"row": n, "id": device_id, "status": "rejected",
                                "errors": errors})
            result.rejected += 1
            continue
        except (ValidationFailed, NotFound, Conflict) as exc:
            errors = [e.as_dict() for e in exc.errors] or [{"field": "row",
                                                              "reason": exc.detail}]
            result.rows.append({"row": n, "id": device_id, "status": "rejected",
                                "errors": errors})
            result.rejected += 1
            continue
        result.rows.append({"row": n, "id": device_id, "status": status, "key": key})
        if status == "created":
            result.created += 1
            created.append(str(device_id))
        elif status == "updated":
            result.updated += 1
    audit.record(session, "anwang.communities.devices.imported", actor=actor,
                 actor_role=actor_role, result_count=result.created + result.updated,
                 data={"created": result.created, "updated": result.updated,
                       "rejected": result.rejected, "devices": created[:200]})
    return result


def _import_row(session: Session, values: dict[str, Any], actor: str,
                actor_role: str | None) -> tuple[str, str | None]:
    existing = session.get(Device, values.get("id")) if values.get("id") else None
    if existing is None:
        data = DeviceCreate.model_validate(values)
        _, key = create_device(session, data=data, actor=actor, actor_role=actor_role,
                               audit_it=False)
        return "created", key
    _check_in_scope(session, existing.jurisdiction_code, "id")
    if values.get("kind") and values["kind"] != existing.kind:
        raise ValidationFailed.on("kind", f"the device is a {existing.kind}; kind cannot change")
    changes = DeviceUpdate.model_validate(
        {k: v for k, v in values.items() if k not in ("id", "kind")})
    given = changes.model_dump(exclude_unset=True)
    same = all(
        (getattr(existing, "community_code" if k == "community" else k)) == v
        for k, v in given.items()
    )
    if same:
        return "unchanged", None
    update_device(session, device_id=existing.id, changes=changes, actor=actor,
                  actor_role=actor_role)
    return "updated", None


# --- rule sets ------------------------------------------------------------------------


def _kind(kind: str) -> DeviceKind:
    try:
        return DeviceKind(kind)
    except ValueError:
        raise ValidationFailed.on(
            "kind", f"one of {', '.join(k.value for k in DeviceKind)}") from None


def rule_changes(session: Session, *, kind: str, community: str | None) -> list[dict[str, Any]]:
    row = session.scalar(select(DeviceRuleSet.rules).where(
        DeviceRuleSet.device_kind == kind, DeviceRuleSet.community_code == (community or "")))
    return list(row or [])


def effective_rules(session: Session, *, kind: str, community: str | None = None) -> list[Any]:
    """The rules in force for ``kind`` (in ``community``): defaults, then the city's
    changes, then the community's."""
    k = _kind(kind)
    if community:
        get_community(session, code=community)
    rules = DEFAULT_RULES[k]
    for scope in ("", community) if community else ("",):
        patches = rule_changes(session, kind=k, community=scope or None)
        if patches:
            rules = merge_rules(rules, patches)
    return list(rules)


def set_rules(session: Session, *, kind: str, community: str | None,
              changes: Sequence[dict[str, Any]], actor: str,
              actor_role: str | None = None) -> list[Any]:
    """Replace the rule changes of ``kind`` city-wide (``community`` None) or in one
    community. The changes must merge into valid rules (422 naming the change and the
    field otherwise). Devices pick the new rules up within seconds."""
    k = _kind(kind)
    if community:
        get_community(session, code=community)
    try:
        merge_rules(DEFAULT_RULES[k], changes)
        if community:
            merge_rules(effective_rules(session, kind=k), changes)
    except RuleError as exc:
        raise ValidationFailed(str(exc), errors=[
            FieldError(f"rules[{exc.index}].{exc.field}", exc.reason)]) from None
    row = session.scalar(select(DeviceRuleSet).where(
        DeviceRuleSet.device_kind == k, DeviceRuleSet.community_code == (community or "")))
    now = utcnow()
    if row is None:
        row = DeviceRuleSet(device_kind=str(k), community_code=community or "", rules=[],
                            updated_at=now, updated_by=actor)
        session.add(row)
    row.rules = [dict(c) for c in changes]
    row.updated_at = now
    row.updated_by = actor
    audit.record(session, "anwang.communities.rules.changed", actor=actor,
                 actor_role=actor_role, subject=f"{k}/{community or '*'}",
                 data={"changes": row.rules})
    _directory_changed(session)
    return effective_rules(session, kind=k, community=community)


# --- device input over HTTP -----------------------------------------------------------


def adapter_of(session: Session, *, device_id: str) -> str | None:
    """The adapter a device's payloads are parsed with (None for an unknown id)."""
    return session.scalar(select(Device.adapter).where(Device.id == device_id))


def ingest_http(session: Session, *, device_id: str, key: str | None, channel: str,
                bodies: Sequence[bytes], now: datetime | None = None,
                max_future_s: float = 30.0) -> intake.IngestReport | None:
    """Messages a device posted over HTTP, each judged on its own like an MQTT message,
    after its key (``X-Device-Key``) is checked. A wrong or missing key, or an id that is
    not registered, is counted (``wrong_credentials``, ``unknown_device``) and answered
    None — the caller refuses with 401 after this unit of work has committed the count,
    the same for both so that the answer does not tell which ids exist."""
    now = now or utcnow()
    row = session.execute(
        select(Device.credential_hash).where(Device.id == device_id)
    ).first()
    if row is None or not key or not credentials.verify_key(row[0], key):
        if row is None:
            intake.count_refusal(session, device_id="", reason=Reason.UNKNOWN_DEVICE,
                                 detail=device_id[:64], now=now)
        else:
            intake.count_refusal(session, device_id=device_id,
                                 reason=Reason.WRONG_CREDENTIALS, detail="http", now=now)
        return None
    received = now.timestamp()
    return intake.ingest(
        session,
        messages=[intake.Inbound(device_id, channel, b, received) for b in bodies],
        now=now, max_future_s=max_future_s,
    )


def rejected_to_error(refused: intake.Refusal) -> ValidationFailed:
    field_name = refused.field or ("payload" if refused.reason != Reason.UNKNOWN_DEVICE else "id")
    return ValidationFailed(
        f"{refused.reason}: {refused.detail}" if refused.detail else str(refused.reason),
        code=f"anwang.communities.{refused.reason}",
        errors=[FieldError(field_name, str(refused.reason))],
    )


# --- health ---------------------------------------------------------------------------


@dataclass
class Health:
    rows: list[dict[str, Any]]
    summary: dict[str, Any]


def device_health(session: Session, *, community: str | None = None,
                  state: str | None = None, limit: int = 500) -> Health:
    """Per-device health (state, last seen, battery, dropped messages by reason) and the
    totals over every device in scope (the totals are counted in SQL; rows are capped
    at ``limit``)."""
    scope = current_scope(session)
    t, s = Device.__table__, DeviceStatus.__table__
    conds = []
    if scope is not None:
        conds.append(scope.clause(t.c.jurisdiction_code))
    if community:
        conds.append(t.c.community_code == community)
    state_expr = _state_case(t, s)
    counts: dict[str, int] = dict(session.execute(
        select(state_expr, func.count()).select_from(
            t.join(s, s.c.device_id == t.c.id, isouter=True)).where(*conds)
        .group_by(state_expr)
    ).all())
    low = session.scalar(
        select(func.count()).select_from(t.join(s, s.c.device_id == t.c.id))
        .where(*conds, t.c.active.is_(True), s.c.battery_pct < LOW_BATTERY_PCT)
    ) or 0
    rows_stmt = (
        select(t.c.id, t.c.kind, t.c.community_code, state_expr, s.c.last_seen_at,
               s.c.battery_pct, s.c.messages)
        .select_from(t.join(s, s.c.device_id == t.c.id, isouter=True))
        .where(*conds)
        .order_by(state_expr.desc(), t.c.id)
        .limit(limit)
    )
    if state:
        rows_stmt = rows_stmt.where(state_expr == state)
    rows = session.execute(rows_stmt).all()
    ids = [r[0] for r in rows]
    rej: dict[str, dict[str, int]] = {}
    for i in range(0, len(ids), 1000):
        for d, reason, n in session.execute(
            select(DeviceRejection.device_id, DeviceRejection.reason, DeviceRejection.count)
            .where(DeviceRejection.device_id.in_(ids[i:i + 1000]))
        ):
            rej.setdefault(d, {})[reason] = int(n)
    r = DeviceRejection.__table__
    totals_stmt = select(r.c.reason, func.sum(r.c.count)).select_from(
        r.join(t, t.c.id == r.c.device_id)).where(*conds).group_by(r.c.reason)
    totals = {k: int(v) for k, v in session.execute(totals_stmt).all()}
    unknown = session.execute(
        select(r.c.count, r.c.last_detail).where(r.c.device_id == "",
                                                 r.c.reason == Reason.UNKNOWN_DEVICE)
    ).first()
    if scope is None or scope.citywide:
        for reason, n in session.execute(
            select(r.c.reason, r.c.count).where(r.c.device_id == "")
        ):
            totals[reason] = totals.get(reason, 0) + int(n)
    online, offline, never = (int(counts.get(k, 0)) for k in ("online", "offline", "never"))
    watched = online + offline + never
    summary = {
        "devices": sum(counts.values()),
        "online": online, "offline": offline, "never": never,
        "inactive": int(counts.get("inactive", 0)),
        "online_share": round(online / watched, 4) if watched else None,
        "low_battery": int(low),
        "rejected": dict(sorted(totals.items())),
        "unknown_device_messages": int(unknown[0]) if unknown else 0,
        "last_unknown_device": unknown[1] if unknown else None,
    }
    out = [
        {"device_id": d, "kind": k, "community": c, "state": st, "last_seen_at": seen,
         "battery_pct": bat, "messages": int(msgs or 0), "rejected": rej.get(d, {})}
        for d, k, c, st, seen, bat, msgs in rows
    ]
    return Health(out, summary)


def _state_case(t: Any, s: Any) -> Any:
    return case(
        (t.c.active.is_(False), "inactive"),
        (s.c.online.is_(False), "offline"),
        (s.c.last_seen_at.is_(None), "never"),
        else_="online",
    )


# --- retention ------------------------------------------------------------------------


def purge(session: Session, *, now: datetime, retention_hours: int) -> dict[str, int]:
    """Delete telemetry samples and device events older than the retention window
    (device time); alarms are kept. Returns how many rows went."""
    cutoff = now - timedelta(hours=retention_hours)
    samples = session.execute(delete(DeviceSample).where(DeviceSample.ts < cutoff))
    events = session.execute(delete(DeviceEvent).where(DeviceEvent.ts < cutoff))
    return {"samples": int(getattr(samples, "rowcount", 0) or 0),
            "events": int(getattr(events, "rowcount", 0) or 0)}
