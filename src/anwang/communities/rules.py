"""The rules engine of community devices: pure, deterministic, and its state is a value.

Rules are data (:class:`Rule`): the built-in defaults per device kind
(:data:`DEFAULT_RULES`), changed per kind and per community by partial rules merged by id
(:func:`merge_rules`). A :class:`RuleBook` is the rules of one (kind, community), indexed
for evaluation. :func:`evaluate` runs readings of one device through a book and returns
the device's next :class:`DeviceState` and the alarm :class:`Transition` s:

``event``
    An event named in ``events`` raises the alarm at once; one named in
    ``clear_events`` ends it. Without clear events the alarm stays up until a person
    clears or closes it (and the service then resets the rule's state).
``threshold``
    ``metric > above`` (or ``metric < below``) held for ``hold_s`` seconds raises;
    the hold runs from the first reading that met the condition to the first reading
    at least ``hold_s`` later that still meets it, every reading between them meeting
    it too. The alarm ends at the first reading past the threshold by ``clear_margin``
    (hysteresis, so that a value hovering at the threshold does not flap).
``rate``
    The rise of ``metric`` per minute, measured from the oldest kept point of the last
    ``window_s`` seconds to the current reading — over at least ``min_span_s`` — above
    ``per_minute`` raises; at or below ``per_minute − clear_margin`` it ends.
``offline``
    Evaluated by the service, not per reading: a device is offline once nothing has
    arrived for ``missed × heartbeat_s`` seconds (:func:`offline_deadline`). The SQL
    scan in :func:`anwang.communities.service.scan_offline` applies the same rule to
    every device at once through the precomputed ``device_status.offline_after``.

Durations and rates use the devices' own timestamps (epoch seconds here), so a buffered
upload is judged as it happened. A reading stamped later than ``now + max_future_s`` is
rejected (``future_timestamp``); one no newer than the newest already judged (a
redelivery, or a reading overtaken by a later one) does not move thresholds or rates —
time never runs backwards for a rule — though its events still count (events are
de-duplicated before they get here, see :class:`anwang.communities.models.DeviceEvent`).

While an alarm is up, every further reading that still meets its condition (and every
further raising event) yields a ``repeat``: the service counts it on the open alarm
instead of raising another.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

#: The state format written by :meth:`DeviceState.to_json`.
STATE_VERSION = 1
#: Points a rate rule keeps of its window (older ones are thinned out).
RATE_POINTS = 16
#: Seconds a device's clock may run ahead of anwang's before its readings are refused.
DEFAULT_MAX_FUTURE_S = 30.0

_NAME = r"^[a-z][a-z0-9_]{0,39}$"


class DeviceKind(StrEnum):
    SMOKE_ALARM = "smoke_alarm"
    CHARGING_PILE = "charging_pile"
    MANHOLE_COVER = "manhole_cover"
    THROW_CAMERA = "throw_camera"
    GATE_SENSOR = "gate_sensor"


class RuleType(StrEnum):
    EVENT = "event"
    THRESHOLD = "threshold"
    RATE = "rate"
    OFFLINE = "offline"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Route(StrEnum):
    """Who an alarm goes to, level by level (:data:`ROUTES`)."""

    FIRE = "fire"
    POLICE = "police"
    MAINTENANCE = "maintenance"


#: The levels an unacknowledged alarm climbs, one per escalation. Each level adds its
#: roles (:data:`LEVEL_ROLES`) to the alarm's audience: the community's property manager
#: (``business``) and grid worker first, then the police station or — through the
#: command centre's dispatchers, anwang having no fire-service role — the fire service,
#: then the commanders.
ROUTES: Mapping[Route, tuple[str, ...]] = {
    Route.FIRE: ("community", "fire_service", "command"),
    Route.POLICE: ("community", "police_station", "command"),
    Route.MAINTENANCE: ("community",),
}
LEVEL_ROLES: Mapping[str, tuple[str, ...]] = {
    "community": ("business", "grid_worker"),
    "police_station": ("officer", "dispatcher"),
    "fire_service": ("dispatcher",),
    "command": ("commander",),
}


def audience_roles(route: Route | str, level: int) -> tuple[str, ...]:
    """Every role an alarm of ``route`` reaches at ``level`` (levels accumulate)."""
    levels = ROUTES[Route(route)]
    roles: list[str] = []
    for name in levels[: min(level, len(levels) - 1) + 1]:
        roles.extend(r for r in LEVEL_ROLES[name] if r not in roles)
    return tuple(roles)


def level_name(route: Route | str, level: int) -> str:
    levels = ROUTES[Route(route)]
    return levels[min(level, len(levels) - 1)]


class Rule(BaseModel):
    """One rule. Which fields matter depends on ``type`` (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=_NAME)
    type: RuleType
    #: The alarm kind it raises (``fire``, ``overheat``, ``maintenance``...).
    alarm: str = Field(pattern=_NAME)
    severity: Severity = Severity.MEDIUM
    route: Route = Route.POLICE
    enabled: bool = True
    #: Seconds an unacknowledged alarm waits before climbing a level; None: never.
    escalate_after_s: int | None = Field(default=300, ge=10, le=7 * 24 * 3600)
    events: tuple[str, ...] = ()
    clear_events: tuple[str, ...] = ()
    metric: str | None = Field(default=None, pattern=_NAME)
    above: float | None = None
    below: float | None = None
    hold_s: float = Field(default=0.0, ge=0, le=24 * 3600)
    clear_margin: float = Field(default=0.0, ge=0)
    per_minute: float | None = Field(default=None, gt=0)
    window_s: float = Field(default=60.0, gt=0, le=24 * 3600)
    min_span_s: float = Field(default=10.0, ge=0, le=24 * 3600)
    #: Heartbeat intervals without any message after which a device is offline.
    missed: int = Field(default=3, ge=1, le=1000)

    @model_validator(mode="after")
    def _fits_type(self) -> Rule:
        t = self.type
        if t is RuleType.EVENT and not self.events:
            raise ValueError("an event rule needs 'events'")
        if t in (RuleType.THRESHOLD, RuleType.RATE) and self.metric is None:
            raise ValueError(f"a {t} rule needs 'metric'")
        if t is RuleType.THRESHOLD and (self.above is None) == (self.below is None):
            raise ValueError("a threshold rule needs exactly one of 'above' and 'below'")
        if t is RuleType.RATE and self.per_minute is None:
            raise ValueError("a rate rule needs 'per_minute'")
        for v in (self.above, self.below, self.per_minute):
            if v is not None and not math.isfinite(v):
                raise ValueError("limits must be finite numbers")
        return self


def _r(**kw: Any) -> Rule:
    return Rule.model_validate(kw)


def _battery() -> Rule:
    return _r(id="battery_low", type="threshold", alarm="maintenance", severity="low",
              route="maintenance", metric="battery_pct", below=20, clear_margin=5,
              escalate_after_s=None)


def _offline() -> Rule:
    return _r(id="offline", type="offline", alarm="maintenance", severity="low",
              route="maintenance", missed=3, escalate_after_s=None)


def _fault(events: tuple[str, ...], clear: tuple[str, ...] = ("fault_cleared",)) -> Rule:
    return _r(id="device_fault", type="event", alarm="maintenance", severity="low",
              route="maintenance", events=events, clear_events=clear, escalate_after_s=None)


#: The built-in rules of each device kind (changed per kind and community through
#: :class:`anwang.communities.models.DeviceRuleSet`).
DEFAULT_RULES: Mapping[DeviceKind, tuple[Rule, ...]] = {
    DeviceKind.SMOKE_ALARM: (
        _r(id="smoke", type="event", alarm="fire", severity="critical", route="fire",
           events=("smoke_alarm", "fire_alarm"), clear_events=("smoke_cleared",),
           escalate_after_s=60),
        _r(id="heat", type="threshold", alarm="fire", severity="high", route="fire",
           metric="temperature_c", above=70, hold_s=10, clear_margin=5, escalate_after_s=60),
        _fault(("fault", "tamper", "removed")),
        _battery(),
        _offline(),
    ),
    DeviceKind.CHARGING_PILE: (
        _r(id="overheat", type="threshold", alarm="overheat", severity="high", route="fire",
           metric="temperature_c", above=80, hold_s=30, clear_margin=5, escalate_after_s=120),
        _r(id="temperature_rise", type="rate", alarm="temperature_rise", severity="medium",
           route="fire", metric="temperature_c", per_minute=10, window_s=60, min_span_s=20,
           clear_margin=5, escalate_after_s=180),
        _r(id="fire", type="event", alarm="fire", severity="critical", route="fire",
           events=("smoke_alarm", "fire_alarm"), clear_events=("smoke_cleared",),
           escalate_after_s=60),
        _r(id="electrical_fault", type="event", alarm="electrical_fault", severity="high",
           route="fire", events=("ground_fault", "arc_fault", "overcurrent"),
           clear_events=("fault_cleared",), escalate_after_s=300),
        _fault(("fault",), ("fault_cleared", "available")),
        _offline(),
    ),
    DeviceKind.MANHOLE_COVER: (
        _r(id="cover_open", type="event", alarm="cover_open", severity="medium",
           route="police", events=("cover_open",), clear_events=("cover_closed",),
           escalate_after_s=300),
        _r(id="cover_tilt", type="threshold", alarm="cover_displaced", severity="medium",
           route="police", metric="tilt_deg", above=15, hold_s=5, clear_margin=3,
           escalate_after_s=300),
        _fault(("fault", "tamper")),
        _battery(),
        _offline(),
    ),
    DeviceKind.THROW_CAMERA: (
        _r(id="object_thrown", type="event", alarm="object_thrown", severity="high",
           route="police", events=("object_thrown",), escalate_after_s=180),
        _fault(("video_loss", "fault", "tamper"), ("video_restored", "fault_cleared")),
        _offline(),
    ),
    DeviceKind.GATE_SENSOR: (
        _r(id="gate_forced", type="event", alarm="gate_forced", severity="medium",
           route="police", events=("forced_open",), clear_events=("closed",),
           escalate_after_s=300),
        _r(id="gate_held_open", type="event", alarm="gate_held_open", severity="low",
           route="police", events=("held_open",), clear_events=("closed",),
           escalate_after_s=900),
        _fault(("fault", "tamper")),
        _battery(),
        _offline(),
    ),
}

#: The events each kind may report (anything else is refused as ``unknown_event``).
#: ``test`` (the test button) and the clearing events raise nothing by default.
KIND_EVENTS: Mapping[DeviceKind, frozenset[str]] = {
    DeviceKind.SMOKE_ALARM: frozenset({
        "smoke_alarm", "fire_alarm", "smoke_cleared", "fault", "fault_cleared", "tamper",
        "removed", "test",
    }),
    DeviceKind.CHARGING_PILE: frozenset({
        "smoke_alarm", "fire_alarm", "smoke_cleared", "ground_fault", "arc_fault",
        "overcurrent", "fault", "fault_cleared", "charging_started", "charging_stopped",
        "available",
    }),
    DeviceKind.MANHOLE_COVER: frozenset({
        "cover_open", "cover_closed", "fault", "fault_cleared", "tamper", "test",
    }),
    DeviceKind.THROW_CAMERA: frozenset({
        "object_thrown", "video_loss", "video_restored", "fault", "fault_cleared", "tamper",
    }),
    DeviceKind.GATE_SENSOR: frozenset({
        "forced_open", "held_open", "closed", "opened", "fault", "fault_cleared", "tamper",
        "test",
    }),
}


def merge_rules(base: Sequence[Rule], patches: Iterable[Mapping[str, Any]]) -> tuple[Rule, ...]:
    """``base`` with ``patches`` applied in order: a patch whose ``id`` names a rule
    changes the fields it gives; any other id must be a whole new rule. Raises
    :class:`RuleError` naming the patch and the field."""
    rules: dict[str, Rule] = {r.id: r for r in base}
    for i, patch in enumerate(patches):
        if not isinstance(patch, Mapping) or not isinstance(patch.get("id"), str):
            raise RuleError(i, "id", "each rule change is an object with an 'id'")
        rid = patch["id"]
        merged = {**rules[rid].model_dump(), **patch} if rid in rules else dict(patch)
        try:
            rules[rid] = Rule.model_validate(merged)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "rule"
            raise RuleError(i, where, str(err["msg"])) from None
    return tuple(rules.values())


class RuleError(ValueError):
    """A rule change that does not make a valid rule: ``index`` of the change, ``field``."""

    def __init__(self, index: int, field_name: str, reason: str) -> None:
        super().__init__(f"rule change {index}: {field_name}: {reason}")
        self.index = index
        self.field = field_name
        self.reason = reason


@dataclass(frozen=True)
class RuleBook:
    """The enabled rules of one (device kind, community), indexed for :func:`evaluate`."""

    rules: tuple[Rule, ...]
    by_event: Mapping[str, tuple[Rule, ...]]
    by_clear_event: Mapping[str, tuple[Rule, ...]]
    by_metric: Mapping[str, tuple[Rule, ...]]
    offline: Rule | None

    @classmethod
    def of(cls, rules: Iterable[Rule]) -> RuleBook:
        enabled = tuple(r for r in rules if r.enabled)
        by_event: dict[str, list[Rule]] = {}
        by_clear: dict[str, list[Rule]] = {}
        by_metric: dict[str, list[Rule]] = {}
        offline = None
        for r in enabled:
            if r.type is RuleType.EVENT:
                for e in r.events:
                    by_event.setdefault(e, []).append(r)
                for e in r.clear_events:
                    by_clear.setdefault(e, []).append(r)
            elif r.type is RuleType.OFFLINE:
                offline = r
            else:
                assert r.metric is not None
                by_metric.setdefault(r.metric, []).append(r)
        return cls(
            rules=enabled,
            by_event={k: tuple(v) for k, v in by_event.items()},
            by_clear_event={k: tuple(v) for k, v in by_clear.items()},
            by_metric={k: tuple(v) for k, v in by_metric.items()},
            offline=offline,
        )

    def get(self, rule_id: str) -> Rule | None:
        for r in self.rules:
            if r.id == rule_id:
                return r
        return None


class Reading(NamedTuple):
    """What one message said, in anwang's terms: device time (epoch seconds), metrics,
    and an event with its detail. Adapters produce these, one or more per message: a
    named tuple because it is made three times faster than a frozen dataclass."""

    ts: float
    metrics: Mapping[str, float] | None = None
    event: str | None = None
    detail: Mapping[str, Any] | None = None


Action = Literal["raise", "repeat", "clear"]


@dataclass(frozen=True, slots=True)
class Transition:
    """An alarm to raise, count again or clear, at device time ``ts``."""

    rule: Rule
    action: Action
    ts: float
    value: float | None = None
    detail: Mapping[str, Any] | None = None


@dataclass(slots=True)
class DeviceState:
    """Everything the rules remember of one device between readings.

    ``hw`` is the newest device time judged; ``rules`` maps rule id to that rule's
    memory: ``on`` (its alarm is up), ``since`` (threshold: when the condition began),
    ``pts`` (rate: ``[t, value]`` points of the window). Plain JSON types only.
    """

    hw: float | None = None
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"v": STATE_VERSION, "hw": self.hw, "r": self.rules}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> DeviceState:
        """The state written by :meth:`to_json`; anything unreadable gives a fresh state
        (the rules then start over rather than the intake failing). ``data`` is not
        kept: the state holds its own copy of the rules' memory."""
        if type(data) is not dict and not isinstance(data, Mapping):
            return cls()
        if data.get("v") != STATE_VERSION:
            return cls()
        hw = data.get("hw")
        rules = data.get("r")
        if not isinstance(rules, dict) or not (hw is None or isinstance(hw, (int, float))):
            return cls()
        for v in rules.values():
            if type(v) is not dict:
                rules = {k: v for k, v in rules.items() if isinstance(v, dict)}
                break
        else:
            rules = dict(rules)
        return cls(None if hw is None else float(hw), rules)

    def forget(self, rule_id: str) -> None:
        """Drop a rule's memory (after a person cleared or closed its alarm)."""
        self.rules.pop(rule_id, None)


@dataclass(slots=True)
class Evaluation:
    state: DeviceState
    transitions: list[Transition]
    #: Readings refused, with the reason (``future_timestamp``).
    rejected: list[tuple[Reading, str]]
    #: Readings whose metrics were older than what was judged already.
    late: int = 0


def evaluate(
    book: RuleBook,
    state: DeviceState,
    readings: Iterable[Reading],
    *,
    now: float,
    max_future_s: float = DEFAULT_MAX_FUTURE_S,
) -> Evaluation:
    """Run ``readings`` (any order; judged in time order) of one device through
    ``book``. ``state`` is not changed; the returned one replaces it.

    This runs for every message the intake accepts, so it is written for speed: a
    rule's memory is copied only when the reading changes it (a battery far above its
    threshold changes nothing), and the rule functions are called with it already
    in hand."""
    rules = state.rules
    hw = state.hw
    out: list[Transition] = []
    rejected: list[tuple[Reading, str]] = []
    late = 0
    limit = now + max_future_s
    #: Memories copied for writing, by rule id (merged over ``rules`` at the end).
    own: dict[str, dict[str, Any]] = {}
    by_metric = book.by_metric
    by_event = book.by_event
    by_clear = book.by_clear_event

    ordered = readings if isinstance(readings, list) and len(readings) == 1 else sorted(
        readings, key=_ts)
    for r in ordered:
        ts = r.ts
        if not ts <= limit:  # also refuses NaN
            rejected.append((r, "future_timestamp"))
            continue
        if r.metrics:
            if hw is not None and ts <= hw:
                late += 1
            else:
                hw = ts
                for metric, value in r.metrics.items():
                    for rule in by_metric.get(metric, ()):
                        rid = rule.id
                        m = own.get(rid)
                        if rule.type is RuleType.THRESHOLD:
                            if m is None:
                                cur = rules.get(rid)
                                if _quiet(rule, cur, value):
                                    continue
                                m = own[rid] = dict(cur) if cur else {}
                            _threshold(rule, m, ts, value, out)
                        else:
                            if m is None:
                                cur = rules.get(rid)
                                m = own[rid] = dict(cur) if cur else {}
                            _rate(rule, m, ts, value, out)
        event = r.event
        if event is not None:
            detail = dict(r.detail) if r.detail else None
            for rule in by_event.get(event, ()):
                m = _writable(own, rules, rule.id)
                out.append(Transition(rule, "repeat" if m.get("on") else "raise", ts,
                                      None, _with_event(detail, event)))
                m["on"] = True
            for rule in by_clear.get(event, ()):
                m = _writable(own, rules, rule.id)
                if m.get("on"):
                    m["on"] = False
                    out.append(Transition(rule, "clear", ts, None, _with_event(detail, event)))
    new_rules = dict(rules)
    if own:
        new_rules.update(own)
    return Evaluation(DeviceState(hw, new_rules), out, rejected, late)


def _writable(own: dict[str, dict[str, Any]], rules: Mapping[str, dict[str, Any]],
              rule_id: str) -> dict[str, Any]:
    m = own.get(rule_id)
    if m is None:
        cur = rules.get(rule_id)
        m = own[rule_id] = dict(cur) if cur else {}
    return m


def _ts(r: Reading) -> float:
    return r.ts if r.ts == r.ts else math.inf  # NaN sorts last (and is then refused)


def _with_event(detail: dict[str, Any] | None, event: str) -> dict[str, Any]:
    return {"event": event, **detail} if detail else {"event": event}


def _quiet(rule: Rule, m: Mapping[str, Any] | None, value: float) -> bool:
    """Whether ``value`` leaves a threshold rule with memory ``m`` exactly as it is: the
    condition is not met, no hold is running and no alarm is up (see :func:`_threshold`,
    which would only set ``since`` to None)."""
    if m and (m.get("since") is not None or m.get("on")):
        return False
    if rule.above is not None:
        return not value > rule.above
    return not value < rule.below  # type: ignore[operator]


def _threshold(rule: Rule, m: dict[str, Any], ts: float, value: float,
               out: list[Transition]) -> None:
    if rule.above is not None:
        met = value > rule.above
        ended = value <= rule.above - rule.clear_margin
    else:
        assert rule.below is not None
        met = value < rule.below
        ended = value >= rule.below + rule.clear_margin
    if met:
        since = m.get("since")
        if since is None:
            since = m["since"] = ts
        if m.get("on"):
            out.append(Transition(rule, "repeat", ts, value, None))
        elif ts - since >= rule.hold_s:
            m["on"] = True
            out.append(Transition(rule, "raise", ts, value, {"held_s": round(ts - since, 3)}))
        return
    m["since"] = None
    if m.get("on") and ended:
        m["on"] = False
        out.append(Transition(rule, "clear", ts, value, None))


def _rate(rule: Rule, m: dict[str, Any], ts: float, value: float,
          out: list[Transition]) -> None:
    assert rule.per_minute is not None
    start = ts - rule.window_s
    pts = [p for p in (m.get("pts") or ()) if p[0] >= start]
    slope = None
    if pts and ts - pts[0][0] >= rule.min_span_s and ts > pts[0][0]:
        slope = (value - pts[0][1]) / (ts - pts[0][0]) * 60.0
    # Keep at most RATE_POINTS points, evenly spaced over the window.
    if not pts or ts - pts[-1][0] >= rule.window_s / RATE_POINTS:
        pts.append([ts, value])
        if len(pts) > RATE_POINTS:
            del pts[0]
    m["pts"] = pts
    if slope is None:
        return
    if slope > rule.per_minute:
        if m.get("on"):
            out.append(Transition(rule, "repeat", ts, round(slope, 3), None))
        else:
            m["on"] = True
            out.append(Transition(rule, "raise", ts, round(slope, 3),
                                  {"per_minute": round(slope, 3), "window_s": rule.window_s}))
    elif m.get("on") and slope <= rule.per_minute - rule.clear_margin:
        m["on"] = False
        out.append(Transition(rule, "clear", ts, round(slope, 3), None))


def offline_deadline(last_seen: float, heartbeat_s: float, missed: int = 3) -> float:
    """When a device last heard from at ``last_seen`` (epoch s) counts as offline."""
    return last_seen + missed * heartbeat_s


def is_offline(last_seen: float, heartbeat_s: float, now: float, missed: int = 3) -> bool:
    """Whether the device has missed ``missed`` heartbeats at ``now``: the rule that the
    offline scan's SQL applies to every device at once."""
    return now > offline_deadline(last_seen, heartbeat_s, missed)
