"""The live-stream fan-out: who gets which event, queue bounds, and one encoding per event."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anwang.auth.permissions import Role
from anwang.core.errors import ValidationFailed
from anwang.core.events import Audience, Event
from anwang.core.scope import Scope
from anwang.web.stream import StreamHub, parse_patterns

NOTICE = "anwang.system.notice.published"
ALERT = "anwang.alerts.alert.raised"

# A small jurisdiction tree with hierarchical codes: city 32, districts 3201/3202, ...
CODES = [None, "32", "3201", "3202", "320101", "320102", "320201", "32010101", "32020101"]
ROLES = [str(r) for r in Role]


def event(name: str = NOTICE, *, roles: tuple[str, ...] = (), jurisdiction: str | None = None,
          **payload: object) -> Event:
    return Event(name=name, audience=Audience(roles=roles, jurisdiction=jurisdiction),
                 payload=dict(payload))


def drain(q: asyncio.Queue[bytes]) -> list[bytes]:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


def parse_frame(frame: bytes) -> dict[str, str]:
    text = frame.decode()
    assert text.endswith("\n\n")
    fields: dict[str, str] = {}
    for line in text.strip("\n").split("\n"):
        key, _, value = line.partition(": ")
        fields[key] = value
    return fields


@given(
    client_role=st.sampled_from(ROLES),
    client_code=st.sampled_from(CODES),
    audience_roles=st.lists(st.sampled_from(ROLES), max_size=3, unique=True),
    event_code=st.sampled_from(CODES),
)
def test_an_event_reaches_exactly_the_clients_allowed_to_see_it(
    client_role: str, client_code: str | None, audience_roles: list[str],
    event_code: str | None,
) -> None:
    hub = StreamHub()
    client = hub.register(role=client_role, scope=Scope(client_code))
    ev = event(roles=tuple(audience_roles), jurisdiction=event_code)
    delivered = hub.publish(ev)

    role_ok = not audience_roles or client_role in audience_roles
    place_ok = (
        client_code is None or event_code is None
        or event_code.startswith(client_code) or client_code.startswith(event_code)
    )
    expected = role_ok and place_ok
    assert delivered == (1 if expected else 0)
    frames = drain(client.queue)
    assert len(frames) == (1 if expected else 0)
    if frames:
        assert json.loads(parse_frame(frames[0])["data"])["id"] == ev.id


@given(
    clients=st.lists(st.tuples(st.sampled_from(ROLES), st.sampled_from(CODES)),
                     min_size=1, max_size=12),
    events=st.lists(st.tuples(st.lists(st.sampled_from(ROLES), max_size=2, unique=True),
                              st.sampled_from(CODES)), min_size=1, max_size=12),
)
def test_fan_out_to_many_clients_keeps_each_clients_order_and_filter(
    clients: list[tuple[str, str | None]], events: list[tuple[list[str], str | None]],
) -> None:
    hub = StreamHub()
    registered = [hub.register(role=r, scope=Scope(c)) for r, c in clients]
    published = [event(roles=tuple(r), jurisdiction=j) for r, j in events]
    for ev in published:
        hub.publish(ev)
    for client in registered:
        want = [e.id for e in published
                if (not e.audience.roles or client.role in e.audience.roles)
                and client.scope.overlaps(e.audience.jurisdiction)]
        got = [json.loads(parse_frame(f)["data"])["id"] for f in drain(client.queue)]
        assert got == want


def test_a_district_dispatcher_sees_own_district_city_wide_and_finer_events_only() -> None:
    hub = StreamHub()
    west = hub.register(role="dispatcher", scope=Scope("3201"))
    east = hub.register(role="dispatcher", scope=Scope("3202"))
    city = hub.register(role="commander", scope=Scope(None))
    hub.publish(e1 := event(jurisdiction="3201"))
    hub.publish(e2 := event(jurisdiction="32010101"))
    hub.publish(e3 := event(jurisdiction=None))
    hub.publish(e4 := event(jurisdiction="3202", roles=("dispatcher",)))
    hub.publish(event(jurisdiction="3202", roles=("officer",)))

    def ids(c: object) -> list[str]:
        return [json.loads(parse_frame(f)["data"])["id"] for f in drain(c.queue)]  # type: ignore[attr-defined]

    assert ids(west) == [e1.id, e2.id, e3.id]
    assert ids(east) == [e3.id, e4.id]
    assert ids(city) == [e1.id, e2.id, e3.id]


def test_frames_carry_id_name_and_the_event_json() -> None:
    hub = StreamHub()
    typed = hub.register(role="dispatcher", scope=Scope(None))
    plain = hub.register(role="dispatcher", scope=Scope(None), typed=False)
    ev = event(message="路口拥堵\nline two", lat=31.78, lon=119.95)
    hub.publish(ev)

    t = parse_frame(drain(typed.queue)[0])
    assert t["id"] == ev.id and t["event"] == NOTICE
    assert Event.from_json(t["data"]) == ev
    p = parse_frame(drain(plain.queue)[0])
    assert "event" not in p and p["id"] == ev.id
    assert Event.from_json(p["data"]) == ev


def test_each_event_is_serialised_once_however_many_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0
    original: Callable[..., str] = Event.model_dump_json

    def counting(self: Event, *args: object, **kw: object) -> str:
        nonlocal calls
        calls += 1
        return original(self, *args, **kw)

    monkeypatch.setattr(Event, "model_dump_json", counting)
    hub = StreamHub()
    typed = [hub.register(role="dispatcher", scope=Scope(None)) for _ in range(100)]
    plain = [hub.register(role="officer", scope=Scope(None), typed=False) for _ in range(100)]
    hub.publish(event())
    assert calls == 1
    frames = [c.queue.get_nowait() for c in typed]
    assert all(f is frames[0] for f in frames)  # shared bytes, not copies
    plain_frames = [c.queue.get_nowait() for c in plain]
    assert all(f is plain_frames[0] for f in plain_frames)

    # An event that no client may see is not serialised at all.
    west_only = StreamHub()
    west_only.register(role="dispatcher", scope=Scope("3201"))
    west_only.publish(event(jurisdiction="3202"))
    assert calls == 1


def test_a_slow_client_loses_its_oldest_frames_not_the_newest() -> None:
    hub = StreamHub(queue_size=3)
    slow = hub.register(role="dispatcher", scope=Scope(None))
    published = [event(n=i) for i in range(5)]
    for ev in published:
        hub.publish(ev)
    got = [json.loads(parse_frame(f)["data"])["id"] for f in drain(slow.queue)]
    assert got == [e.id for e in published[2:]]
    assert slow.dropped == 2
    hub.unregister(slow)
    assert hub.dropped == 2 and hub.clients == ()


def test_name_patterns_filter_the_stream() -> None:
    hub = StreamHub()
    alerts = hub.register(role="dispatcher", scope=Scope(None),
                          patterns=parse_patterns("anwang.alerts.>"))
    both = hub.register(role="dispatcher", scope=Scope(None),
                        patterns=parse_patterns("anwang.alerts.>, anwang.system.*.published"))
    hub.publish(event(NOTICE))
    hub.publish(event(ALERT))
    assert [parse_frame(f)["event"] for f in drain(alerts.queue)] == [ALERT]
    assert [parse_frame(f)["event"] for f in drain(both.queue)] == [NOTICE, ALERT]


@pytest.mark.parametrize("bad", ["anwang..x", "anwang.>.x", "ANWANG.x", "a b", "anwang.x>",
                                 ",".join(["anwang.x"] * 21)])
def test_bad_name_patterns_are_refused(bad: str) -> None:
    with pytest.raises(ValidationFailed):
        parse_patterns(bad)


def test_good_name_patterns_are_accepted() -> None:
    assert parse_patterns(None) == ()
    assert parse_patterns(">") == (">",)
    assert parse_patterns("anwang.*.alert.raised,anwang.system.>") == (
        "anwang.*.alert.raised", "anwang.system.>",
    )


class FakeBus:
    def __init__(self) -> None:
        self.listeners: list[tuple[str, Callable[[Event], object]]] = []

    def add_listener(self, pattern: str, listener: Callable[[Event], object]) -> Callable[[], None]:
        item = (pattern, listener)
        self.listeners.append(item)
        return lambda: self.listeners.remove(item)


def test_the_hub_listens_to_the_bus_only_while_it_has_clients() -> None:
    bus = FakeBus()
    hub = StreamHub(bus)  # type: ignore[arg-type]
    assert bus.listeners == []
    a = hub.register(role="dispatcher", scope=Scope(None))
    b = hub.register(role="officer", scope=Scope(None))
    assert len(bus.listeners) == 1 and bus.listeners[0][0] == "anwang.>"
    bus.listeners[0][1](event())
    assert a.queue.qsize() == 1 and b.queue.qsize() == 1
    hub.unregister(a)
    assert len(bus.listeners) == 1
    hub.unregister(b)
    assert bus.listeners == []


async def test_publishing_from_another_thread_is_handed_to_the_loop() -> None:
    hub = StreamHub()
    client = hub.register(role="dispatcher", scope=Scope(None))
    ev = event()
    t = threading.Thread(target=hub.publish, args=(ev,))
    t.start()
    t.join()
    frame = await asyncio.wait_for(client.queue.get(), timeout=2)
    assert parse_frame(frame)["id"] == ev.id
