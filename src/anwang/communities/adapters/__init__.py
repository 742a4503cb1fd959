"""Device payload adapters: one module per wire format, each a pure parser.

An adapter turns the raw bytes a device published (on the channel named by the last
topic segment: ``telemetry``, ``events``, ``heartbeat``, or a vendor's own) into
:class:`~anwang.communities.rules.Reading` s in anwang's terms, or raises
:class:`Rejected` with a reason that the intake counts. No adapter touches the network
or the database, so each is tested against recorded sample payloads
(``tests/unit/communities/samples/<adapter>/``). An empty list is a valid answer: the
message was a heartbeat and says nothing else.

Shared here: the reasons (:class:`Reason`), the physical limits of the metrics anwang
knows (:data:`METRIC_LIMITS`; a value outside them is ``impossible_value``) and the
helpers every adapter uses to read JSON, times and numbers the same way. The formats
are documented in ``docs/devices.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import orjson

from anwang.communities.rules import Reading

#: Largest payload parsed; bigger ones are refused as ``too_large``.
MAX_PAYLOAD_BYTES = 64 * 1024
#: At most this many metrics in one reading.
MAX_METRICS = 32


class Reason(StrEnum):
    """Why a message was dropped (each is counted per device in device health)."""

    NOT_JSON = "not_json"
    BAD_SHAPE = "bad_shape"
    WRONG_TYPE = "wrong_type"
    BAD_TIMESTAMP = "bad_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    IMPOSSIBLE_VALUE = "impossible_value"
    UNKNOWN_EVENT = "unknown_event"
    UNKNOWN_DEVICE = "unknown_device"
    WRONG_CREDENTIALS = "wrong_credentials"
    DEVICE_INACTIVE = "device_inactive"
    BAD_TOPIC = "bad_topic"
    TOO_LARGE = "too_large"
    #: The intake failed on this one message again and again (a bug, logged).
    HANDLER_ERROR = "handler_error"


class Rejected(Exception):  # noqa: N818 - it names the outcome, like the reasons
    """The message cannot be used. ``field`` names where, ``detail`` says what."""

    def __init__(self, reason: Reason, detail: str = "", *, field: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail
        self.field = field


#: The metrics anwang knows and the values a working sensor can report. A reading
#: outside these is refused whole (``impossible_value``): a 900 °C charger or a
#: negative battery says the sensor or the payload is broken, not the world.
METRIC_LIMITS: Mapping[str, tuple[float, float]] = {
    "temperature_c": (-55.0, 250.0),
    "battery_pct": (0.0, 100.0),
    "power_w": (0.0, 500_000.0),
    "voltage_v": (0.0, 1_500.0),
    "current_a": (0.0, 1_000.0),
    "energy_kwh": (0.0, 10_000_000.0),
    "soc_pct": (0.0, 100.0),
    "smoke_obscuration_pct_m": (0.0, 100.0),
    "co_ppm": (0.0, 10_000.0),
    "humidity_pct": (0.0, 100.0),
    "tilt_deg": (0.0, 180.0),
    "water_level_cm": (0.0, 1_000.0),
    "signal_dbm": (-150.0, 0.0),
}


class Adapter(Protocol):
    """What each adapter module provides."""

    NAME: str
    #: The device kinds the format is made for.
    KINDS: frozenset[str]

    @staticmethod
    def parse(channel: str, payload: bytes, *, received_at: float) -> list[Reading]: ...


_BOM = b"\xef\xbb\xbf"


def load_json(payload: bytes) -> Any:
    """The JSON document in ``payload`` (RFC 8259: UTF-8, an optional byte order mark
    skipped). Decoded by orjson, which is stricter than the standard library where the
    RFC is: ``NaN`` and ``Infinity`` are not JSON, nor are lone surrogates, and a number
    too large for a double is refused — all ``not_json``."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected(Reason.TOO_LARGE, f"{len(payload)} bytes")
    if payload[:3] == _BOM:
        payload = payload[3:]
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise Rejected(Reason.NOT_JSON, str(exc)[:120]) from None


def _name(field: str, at: tuple[object, ...]) -> str:
    """The field's name: ``field`` with ``at`` put in its ``%`` places. The helpers below
    take the pieces and make the name only when they refuse: on the hot path nearly
    every value is good, and formatting names it never shows would be waste."""
    return field % at if at else field


def need_object(value: Any, field: str, *at: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        name = _name(field, at)
        raise Rejected(Reason.BAD_SHAPE, f"{name} must be an object", field=name)
    return value


def rfc3339(value: Any, field: str = "ts", *at: object) -> float:
    """An RFC 3339 time with an offset, as epoch seconds."""
    if not isinstance(value, str):
        name = _name(field, at)
        raise Rejected(Reason.WRONG_TYPE, f"{name} must be an RFC 3339 string", field=name)
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        name = _name(field, at)
        raise Rejected(Reason.BAD_TIMESTAMP, f"{name}: {value[:40]!r}", field=name) from None
    if dt.tzinfo is None:
        name = _name(field, at)
        raise Rejected(Reason.BAD_TIMESTAMP, f"{name} needs a UTC offset", field=name)
    # What dt.timestamp() computes for an aware time, without its detour (3x slower).
    return (dt - _EPOCH).total_seconds()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch(value: Any, field: str, *at: object, millis: bool = False) -> float:
    """Seconds (or milliseconds) since 1970 as epoch seconds."""
    t = type(value)
    if t is not int and t is not float and (
            isinstance(value, bool) or not isinstance(value, (int, float))):
        name = _name(field, at)
        raise Rejected(Reason.WRONG_TYPE, f"{name} must be a number", field=name)
    seconds = value / 1000.0 if millis else float(value)
    if not math.isfinite(seconds) or not 0 < seconds < 32503680000:  # before year 3000
        name = _name(field, at)
        raise Rejected(Reason.BAD_TIMESTAMP, f"{name}: {value!r}", field=name)
    return seconds


def number(value: Any, field: str, *at: object) -> float:
    """A JSON number (not a boolean, not a string)."""
    t = type(value)
    if t is float:
        if math.isfinite(value):
            return value  # type: ignore[no-any-return]
    elif t is int:
        return float(value)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        name = _name(field, at)
        raise Rejected(Reason.WRONG_TYPE, f"{name} must be a number", field=name)
    v = float(value)
    if not math.isfinite(v):
        name = _name(field, at)
        raise Rejected(Reason.IMPOSSIBLE_VALUE, f"{name} is not finite", field=name)
    return v


def numeric_text(value: Any, field: str, *at: object) -> float:
    """A number sent as a string (OCPP) or as a number."""
    if isinstance(value, str):
        try:
            v = float(value)
        except ValueError:
            name = _name(field, at)
            raise Rejected(Reason.WRONG_TYPE, f"{name}: {value[:20]!r}", field=name) from None
        if not math.isfinite(v):
            name = _name(field, at)
            raise Rejected(Reason.IMPOSSIBLE_VALUE, f"{name} is not finite", field=name)
        return v
    return number(value, field, *at)


def check_metric(name: str, value: float) -> float:
    """``value`` if it is possible for ``name`` (unknown metrics: any finite number)."""
    limits = METRIC_LIMITS.get(name)
    if limits is not None and not limits[0] <= value <= limits[1]:
        raise Rejected(
            Reason.IMPOSSIBLE_VALUE,
            f"{name} = {value:g} outside [{limits[0]:g}, {limits[1]:g}]",
            field=f"metrics.{name}",
        )
    return value


def is_name(value: Any) -> bool:
    """``[a-z][a-z0-9_]{0,39}``: metric and event names."""
    if type(value) is str and value in _NAMES:
        return True
    ok = (isinstance(value, str) and 0 < len(value) <= 40 and value.isascii()
          and value[0].isalpha() and value.replace("_", "").isalnum() and value.islower())
    if ok and len(_NAMES) < 10_000:  # devices use a few dozen names; bound the set anyway
        _NAMES.add(value)
    return ok


#: Names already found valid (a set lookup instead of five string scans per metric).
_NAMES: set[str] = set(METRIC_LIMITS)


def metrics_of(raw: Any, field: str = "metrics", *at: object) -> dict[str, float]:
    """A ``{"name": number}`` object checked against :data:`METRIC_LIMITS`.

    The same checks as :func:`is_name`, :func:`number` and :func:`check_metric` one by
    one, with the common case (a known name, a plain number in range) done inline: this
    runs for nearly every message."""
    obj = need_object(raw, field, *at)
    if len(obj) > MAX_METRICS:
        raise Rejected(Reason.BAD_SHAPE, f"more than {MAX_METRICS} metrics",
                       field=_name(field, at))
    out: dict[str, float] = {}
    names, limits_of = _NAMES, METRIC_LIMITS
    for k, v in obj.items():
        if k not in names and not is_name(k):
            raise Rejected(Reason.BAD_SHAPE, f"metric name {k[:40]!r}", field=_name(field, at))
        t = type(v)
        if t is float and math.isfinite(v):
            pass
        elif t is int:
            v = float(v)
        else:
            v = number(v, "%s.%s", _name(field, at), k)
        limits = limits_of.get(k)
        if limits is not None and not limits[0] <= v <= limits[1]:
            check_metric(k, v)  # raises, saying why
        out[k] = v
    return out


def _registry() -> dict[str, Adapter]:
    from anwang.communities.adapters import native, nbiot_smoke, ocpp16, sentry_smoke, voltpile

    mods: list[Adapter] = [native, sentry_smoke, nbiot_smoke, voltpile, ocpp16]  # type: ignore[list-item]
    return {m.NAME: m for m in mods}


_ADAPTERS: dict[str, Adapter] | None = None


def adapters() -> Mapping[str, Adapter]:
    """Every adapter by name (``native`` is anwang's own format)."""
    global _ADAPTERS
    if _ADAPTERS is None:
        _ADAPTERS = _registry()
    return _ADAPTERS


def get(name: str) -> Adapter | None:
    return adapters().get(name)


Parse = Callable[..., list[Reading]]
_PARSERS: dict[str, Parse] | None = None


def parsers() -> Mapping[str, Parse]:
    """Every adapter's ``parse`` by adapter name (one lookup per message on the intake's
    hot path instead of two)."""
    global _PARSERS
    if _PARSERS is None:
        _PARSERS = {name: a.parse for name, a in adapters().items()}
    return _PARSERS


Parser = Callable[[str, bytes], list[Reading]]


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
