"""Who receives an alert on the live stream: the entry's recipients, and nobody else."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy import select

from anwang.alerts import service as alerts
from anwang.alerts.events import RAISED
from anwang.alerts.models import Alert
from anwang.core.events import Event, utcnow
from anwang.core.scope import Scope
from anwang.watchlist import service as wl
from anwang.web.stream import StreamHub
from tests.integration.watchlist.kit import EAST, WEST, Kit, read
from tests.integration.web.test_stream import Stream, frames, running, session_cookie


def raised(kit: Kit, where: dict[str, object] = WEST) -> Event:
    r = read("苏D12345", utcnow(), where=where)  # type: ignore[arg-type]
    with kit.db.unit_of_work() as s:
        for rr, hits in wl.match_reads(s, reads=[r]):
            alerts.raise_for_hits(s, read=rr, hits=hits)
    return [e for e in kit.events() if e.name == RAISED][-1]


CLIENTS: dict[str, tuple[str, str | None]] = {
    "west station officer": ("officer", "320101"),
    "west district dispatcher": ("dispatcher", "3201"),
    "city commander": ("commander", None),
    "west grid worker": ("grid_worker", "32010101"),
    "east district dispatcher": ("dispatcher", "3202"),
    "east station officer": ("officer", "320201"),
    "city analyst": ("analyst", None),
}


async def audience_of(event: Event) -> set[str]:
    hub = StreamHub()
    clients = {name: hub.register(role=role, scope=Scope(code))
               for name, (role, code) in CLIENTS.items()}
    hub.publish(event)
    return {name for name, c in clients.items() if not c.queue.empty()}


async def test_by_default_the_checkpoints_dispatchers_officers_and_commanders(kit: Kit) -> None:
    kit.entry("苏D12345", now=utcnow())
    assert await audience_of(raised(kit, WEST)) == {
        "west station officer", "west district dispatcher", "city commander"}
    assert await audience_of(raised(kit, EAST)) == {
        "east station officer", "east district dispatcher", "city commander"}


async def test_the_entrys_recipients_decide(kit: Kit) -> None:
    kit.entry("苏D12345", now=utcnow(), recipient_roles=["dispatcher", "analyst"],
              recipient_jurisdictions=["3202"])
    assert await audience_of(raised(kit, WEST)) == {"east district dispatcher", "city analyst"}


async def test_an_escalation_widens_the_audience(kit: Kit) -> None:
    kit.entry("苏D12345", now=utcnow())
    raised(kit, WEST)
    with kit.db.unit_of_work() as s:
        alerts.scan_escalations(s, now=utcnow() + timedelta(minutes=3),
                                escalate_after_minutes=2)
    escalated = kit.events()[-1]
    assert escalated.name == "anwang.alerts.alert.escalated"
    assert await audience_of(escalated) == {
        "west station officer", "west district dispatcher", "city commander"}
    with kit.db.unit_of_work() as s:
        alerts.scan_escalations(s, now=utcnow() + timedelta(minutes=6),
                                escalate_after_minutes=2)
    # City-wide now: every dispatcher, officer and commander of the city.
    assert await audience_of(kit.events()[-1]) == {
        "west station officer", "west district dispatcher", "city commander",
        "east district dispatcher", "east station officer"}


def raise_alert(kit: Kit, where: dict[str, object]) -> str:
    """Raise an alert as the ingestion does (the app publishes it); returns its id."""
    r = read("苏D12345", utcnow(), where=where)  # type: ignore[arg-type]
    with kit.db.unit_of_work() as s:
        [(rr, hits)] = wl.match_reads(s, reads=[r])
        alerts.raise_for_hits(s, read=rr, hits=hits)
        return str(s.scalar(select(Alert.id).where(Alert.read_id == r.read_id)))


async def test_a_raised_alert_arrives_on_the_real_stream(app: FastAPI, kit: Kit) -> None:
    kit.entry("苏D12345", now=utcnow())
    west, east = session_cookie(kit.db, "west.disp"), session_cookie(kit.db, "east.disp")
    async with running(app), \
            Stream(app, "/api/v1/stream", cookie=west, query="names=anwang.alerts.>") as w, \
            Stream(app, "/api/v1/stream", cookie=east) as e:
        await w.read_until("anwang live stream")
        await e.read_until("anwang live stream")
        west_alert = await asyncio.to_thread(raise_alert, kit, WEST)
        got = frames(await w.read_until(west_alert))
        assert [f["event"] for f in got] == [RAISED]
        payload = json.loads(got[0]["data"])["payload"]
        assert payload["alert_id"] == west_alert
        assert payload["plate"] == "苏D12345" and payload["checkpoint"] == "CP-W1"
        # The east dispatcher gets the east alert, and never saw the west one.
        east_alert = await asyncio.to_thread(raise_alert, kit, EAST)
        text = await e.read_until(east_alert)
        assert west_alert not in text
