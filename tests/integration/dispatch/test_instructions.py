"""Instructions: sent to a unit or a post, acknowledged once, escalated when not."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from anwang.core import audit
from anwang.core.events import utcnow
from anwang.dispatch import instructions
from anwang.dispatch.models import Instruction

from .conftest import EAST, WEST, Kit


def test_acknowledged_on_the_phone(client: TestClient, kit: Kit, auth: Any) -> None:
    station = kit.city.first_station
    car = kit.unit("巡501", "patrol_car", station, 1, at=utcnow())
    west = auth("west.dispatcher")
    lat, lon = kit.city.point(station, 2)
    inc = client.post("/api/v1/incidents", headers=west,
                      json={"type": "disturbance", "lat": lat, "lon": lon}).json()
    r = client.post("/api/v1/instructions", headers=west, json={
        "text": "请立即前往青果巷，注意安全", "unit_id": car, "incident_id": inc["id"]})
    assert r.status_code == 201, r.text
    ins = r.json()
    assert ins["acknowledged_at"] is None and ins["sent_by"] == "west.dispatcher"

    officer = auth("west.officer")
    pending = client.get(f"/api/v1/units/{car}/instructions?open=true", headers=officer).json()
    assert [i["id"] for i in pending] == [ins["id"]]
    r = client.post(f"/api/v1/instructions/{ins['id']}/acknowledge", headers=officer)
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "west.officer"
    r = client.post(f"/api/v1/instructions/{ins['id']}/acknowledge", headers=officer)
    assert r.status_code == 409 and r.json()["code"] == "anwang.dispatch.already_acknowledged"
    assert client.get(f"/api/v1/units/{car}/instructions?open=true", headers=officer).json() == []

    timeline = client.get(f"/api/v1/incidents/{inc['id']}/timeline", headers=west).json()
    assert [e["action"] for e in timeline][-2:] == [
        "anwang.dispatch.instruction.sent", "anwang.dispatch.instruction.acknowledged"]

    # another district's people neither see nor acknowledge it
    east = auth("east.dispatcher")
    assert client.post(f"/api/v1/instructions/{ins['id']}/acknowledge",
                       headers=east).status_code == 404
    assert client.get("/api/v1/instructions", headers=east).json() == []


def test_bad_instructions(client: TestClient, kit: Kit, auth: Any) -> None:
    post = kit.post("ZD-T-1", WEST, 7, kind="key_location")
    car = kit.unit("巡502", "patrol_car", WEST, 8)
    west = auth("west.dispatcher")

    def refused(body: dict[str, Any], status: int = 422) -> str:
        r = client.post("/api/v1/instructions", headers=west, json=body)
        assert r.status_code == status, r.text
        return str(r.json()["errors"][0]["field"]) if status == 422 else r.json()["code"]

    assert refused({"text": "x", "unit_id": car, "post_id": post}) == "unit_id"
    assert refused({"text": "x"}) == "unit_id"
    assert refused({"text": "", "unit_id": car}).endswith("text")
    assert refused({"text": "x", "unit_id": "nobody"}, 404) == "anwang.dispatch.unit_not_found"
    r = client.post("/api/v1/instructions", headers=west,
                    json={"text": "加强巡逻", "post_id": "ZD-T-1"})
    assert r.status_code == 201 and r.json()["post_id"] == post
    assert client.post("/api/v1/instructions", headers=auth("west.officer"),
                       json={"text": "x", "unit_id": car}).status_code == 403


def test_unacknowledged_instructions_are_escalated(kit: Kit) -> None:
    car = kit.unit("巡503", "patrol_car", WEST, 9)
    other = kit.unit("东503", "patrol_car", EAST, 9)
    t0 = utcnow()
    with kit.uow(WEST) as s:
        a = instructions.send_instruction(s, text="回电", unit_id=car, actor="d", now=t0).id
    with kit.uow(EAST) as s:
        b = instructions.send_instruction(s, text="回电", unit_id=other, actor="d", now=t0).id
        instructions.acknowledge(s, instruction_id=b, actor="o", now=t0 + timedelta(minutes=1))

    def scan(minutes: float) -> int:
        with kit.uow() as s:
            return instructions.scan_escalations(s, now=t0 + timedelta(minutes=minutes),
                                                 after_minutes=3)

    assert scan(2.9) == 0
    assert scan(3.1) == 1
    assert scan(3.2) == 0  # not twice for the same step
    assert scan(6.5) == 1
    assert scan(60) == 1  # one step per scan, up to the last level
    assert scan(61) == 0
    with kit.uow() as s:
        row = s.get(Instruction, a)
        assert row.escalation_level == 3 and s.get(Instruction, b).escalation_level == 0
        actions = s.scalars(select(audit.AuditEntry.action).where(
            audit.AuditEntry.subject == f"instruction:{a}").order_by(audit.AuditEntry.seq)).all()
        assert actions == ["anwang.dispatch.instruction.sent"] + [
            "anwang.dispatch.instruction.escalated"] * 3
    # acknowledged after escalation: nothing more to escalate
    with kit.uow(WEST) as s:
        instructions.acknowledge(s, instruction_id=a, actor="o", now=t0 + timedelta(minutes=62))
