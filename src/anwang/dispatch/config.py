"""Dispatch configuration: the incident taxonomy and the timing rules.

Defaults are built in; a bureau overrides them with ``<data_dir>/dispatch.json``::

    {
      "incident_types": [
        {"code": "theft", "priority": 3,
         "unit_kinds": ["patrol_car", "motorcycle", "foot_patrol"]},
        ...
      ],
      "stale_position_minutes": 10,
      "instruction_escalate_minutes": 3,
      "timezone": "Asia/Shanghai"
    }

``incident_types``, when given, replaces the whole list (a type left out can no longer
be chosen for new incidents; stored incidents keep theirs). The file is read again when
it changes. A broken file is refused loudly (``ValidationFailed`` naming the key) rather
than silently replaced by the defaults.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from anwang.core.errors import FieldError, ValidationFailed

CONFIG_FILE: Final = "dispatch.json"


class UnitKind(StrEnum):
    PATROL_CAR = "patrol_car"
    MOTORCYCLE = "motorcycle"
    FOOT_PATROL = "foot_patrol"
    QUICK_RESPONSE_TEAM = "quick_response_team"
    SWAT = "swat"


class UnitStatus(StrEnum):
    AVAILABLE = "available"
    DISPATCHED = "dispatched"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    OUT_OF_SERVICE = "out_of_service"


class IncidentStatus(StrEnum):
    RECEIVED = "received"
    DISPATCHED = "dispatched"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    CLEARED = "cleared"
    CANCELLED = "cancelled"


class PostKind(StrEnum):
    QUICK_RESPONSE = "quick_response"
    KEY_LOCATION = "key_location"


#: Response-time targets (minutes) that every statistic is measured against.
RESPONSE_TARGETS_MIN: Final = (1, 3, 5)


@dataclass(frozen=True)
class IncidentType:
    """One entry of the taxonomy: the default priority (1 most urgent … 4) and the unit
    kinds that may be sent, in order of preference (shown, not enforced on ranking)."""

    code: str
    priority: int
    unit_kinds: tuple[UnitKind, ...]


_ALL_ROAD = (UnitKind.PATROL_CAR, UnitKind.MOTORCYCLE)

DEFAULT_TYPES: Final[tuple[IncidentType, ...]] = (
    IncidentType("theft", 3, (*_ALL_ROAD, UnitKind.FOOT_PATROL)),
    IncidentType("burglary", 2, (*_ALL_ROAD, UnitKind.QUICK_RESPONSE_TEAM)),
    IncidentType(
        "assault", 1, (UnitKind.QUICK_RESPONSE_TEAM, *_ALL_ROAD, UnitKind.FOOT_PATROL)
    ),
    IncidentType("traffic_accident", 2, _ALL_ROAD),
    IncidentType("fire", 1, (UnitKind.PATROL_CAR, UnitKind.QUICK_RESPONSE_TEAM)),
    IncidentType(
        "medical", 1, (*_ALL_ROAD, UnitKind.QUICK_RESPONSE_TEAM, UnitKind.FOOT_PATROL)
    ),
    IncidentType("disturbance", 3, (UnitKind.FOOT_PATROL, *_ALL_ROAD)),
    IncidentType("suspicious_vehicle", 4, _ALL_ROAD),
    IncidentType("armed_threat", 1, (UnitKind.SWAT, UnitKind.QUICK_RESPONSE_TEAM)),
)


@dataclass(frozen=True)
class DispatchConfig:
    types: tuple[IncidentType, ...] = DEFAULT_TYPES
    #: A position older than this is stale: recommendations start from the home post.
    stale_position_minutes: float = 10.0
    #: An instruction unacknowledged this long is escalated (and again after as long).
    instruction_escalate_minutes: float = 3.0
    #: Local time zone of the hour-of-day statistics.
    timezone: str = "Asia/Shanghai"
    _by_code: dict[str, IncidentType] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_code", {t.code: t for t in self.types})

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def type(self, code: str, *, field_name: str = "type") -> IncidentType:
        got = self._by_code.get(code)
        if got is None:
            known = ", ".join(t.code for t in self.types)
            raise ValidationFailed.on(field_name, f"unknown incident type; one of {known}")
        return got

    def has_type(self, code: str) -> bool:
        return code in self._by_code


def parse_config(doc: Mapping[str, Any]) -> DispatchConfig:
    """A :class:`DispatchConfig` from the JSON document (see the module docstring)."""
    if not isinstance(doc, Mapping):
        raise ValidationFailed.on(CONFIG_FILE, "must be a JSON object")
    errors: list[FieldError] = []
    kw: dict[str, Any] = {}
    if "incident_types" in doc:
        types = _parse_types(doc["incident_types"], errors)
        if types:
            kw["types"] = types
    for key in ("stale_position_minutes", "instruction_escalate_minutes"):
        if key in doc:
            v = doc[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 24 * 60:
                errors.append(FieldError(key, "must be a number of minutes above 0"))
            else:
                kw[key] = float(v)
    if "timezone" in doc:
        try:
            ZoneInfo(str(doc["timezone"]))
            kw["timezone"] = str(doc["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            errors.append(FieldError("timezone", "not a known IANA time zone"))
    if errors:
        raise ValidationFailed(f"{CONFIG_FILE}: {errors[0].field}: {errors[0].reason}",
                               errors=errors)
    return DispatchConfig(**kw)


def _parse_types(raw: Any, errors: list[FieldError]) -> tuple[IncidentType, ...]:
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        errors.append(FieldError("incident_types", "must be a non-empty list"))
        return ()
    out: list[IncidentType] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"incident_types[{i}]"
        if not isinstance(item, Mapping):
            errors.append(FieldError(where, "must be an object"))
            continue
        code = item.get("code")
        if not isinstance(code, str) or not code.strip() or len(code) > 40:
            errors.append(FieldError(f"{where}.code", "must be a name of 1-40 characters"))
            continue
        if code in seen:
            errors.append(FieldError(f"{where}.code", "is listed twice"))
            continue
        prio = item.get("priority")
        if isinstance(prio, bool) or not isinstance(prio, int) or not 1 <= prio <= 4:
            errors.append(FieldError(f"{where}.priority", "must be 1, 2, 3 or 4"))
            continue
        kinds_raw = item.get("unit_kinds")
        if not isinstance(kinds_raw, Sequence) or isinstance(kinds_raw, str) or not kinds_raw:
            errors.append(FieldError(f"{where}.unit_kinds", "must be a non-empty list"))
            continue
        try:
            kinds = tuple(UnitKind(k) for k in kinds_raw)
        except ValueError:
            errors.append(FieldError(
                f"{where}.unit_kinds", "unknown unit kind; one of " + ", ".join(UnitKind)))
            continue
        seen.add(code)
        out.append(IncidentType(code, prio, kinds))
    return tuple(out)


_lock = threading.Lock()
_cache: dict[Path, tuple[tuple[int, int] | None, DispatchConfig]] = {}


def load_config(data_dir: Path) -> DispatchConfig:
    """The configuration of ``data_dir`` (defaults without a file), re-read on change."""
    path = (Path(data_dir) / CONFIG_FILE).resolve()
    try:
        st = path.stat()
        version: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
    except FileNotFoundError:
        version = None
    got = _cache.get(path)
    if got is not None and got[0] == version:
        return got[1]
    with _lock:
        if version is None:
            config = DispatchConfig()
        else:
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValidationFailed.on(CONFIG_FILE, f"cannot be read: {exc}") from None
            config = parse_config(doc)
        _cache[path] = (version, config)
        return config
