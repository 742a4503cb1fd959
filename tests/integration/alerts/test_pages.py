"""The alert pages: the phone-sized alert with its buttons, the list, the statistics."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient
from sqlalchemy import select

from anwang.alerts import service as alerts
from anwang.alerts.models import Alert
from anwang.core.events import utcnow
from anwang.watchlist import service as wl
from tests.integration.watchlist.kit import EAST, PASSWORD, WEST, Kit, read

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def login(client: TestClient, username: str) -> str:
    r = client.post("/login", data={"username": username, "password": PASSWORD},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    m = CSRF.search(client.get("/alerts").text)
    assert m is not None
    return m.group(1)


def raise_at(kit: Kit, where: dict[str, object] = WEST) -> str:
    r = read("苏D12345", utcnow(), where=where)  # type: ignore[arg-type]
    with kit.db.unit_of_work() as s:
        [(rr, hits)] = wl.match_reads(s, reads=[r])
        alerts.raise_for_hits(s, read=rr, hits=hits)
        return str(s.scalar(select(Alert.id).where(Alert.read_id == r.read_id)))


def test_acknowledge_and_close_on_the_alert_page(client: TestClient, kit: Kit) -> None:
    kit.entry("苏D12345", now=utcnow(), vehicle={"colour": "white", "make": "Toyota"})
    aid = raise_at(kit)
    token = login(client, "west.disp")
    page = client.get(f"/alerts/{aid}")
    assert page.status_code == 200
    assert "未经确认 — 处置前请目视核对号牌和车辆" in page.text
    assert "苏D12345" in page.text and "white Toyota" in page.text and "西门卡口" in page.text
    assert 'id="acknowledge"' in page.text and 'id="close"' not in page.text
    hx = {"HX-Request": "true", "X-CSRF-Token": token}
    panel = client.post(f"/alerts/{aid}/acknowledge", headers=hx)
    assert panel.status_code == 200 and panel.text.lstrip().startswith("<article")
    assert 'data-status="acknowledged"' in panel.text and 'id="close"' in panel.text
    # A second acknowledgement (another dispatcher was quicker) is explained, not a crash.
    again = client.post(f"/alerts/{aid}/acknowledge", headers=hx)
    assert 'class="problem"' in again.text and 'data-status="acknowledged"' in again.text
    panel = client.post(f"/alerts/{aid}/close", headers=hx,
                        data={"outcome": "confirmed", "note": "车辆已拦截"})
    assert 'data-status="closed"' in panel.text and "车辆已拦截" in panel.text
    with kit.db.unit_of_work() as s:
        a = s.get(Alert, aid)
        assert a is not None and (a.status, a.outcome, a.closed_by) == (
            "closed", "confirmed", "west.disp")
    assert kit.audit_ok()


def test_without_javascript_the_forms_redirect_back(client: TestClient, kit: Kit) -> None:
    kit.entry("苏D12345", now=utcnow())
    aid = raise_at(kit)
    token = login(client, "cmd")
    r = client.post(f"/alerts/{aid}/acknowledge", data={"csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/alerts/{aid}"


def test_the_list_and_the_scope(client: TestClient, kit: Kit) -> None:
    kit.entry("苏D12345", now=utcnow())
    west, east = raise_at(kit, WEST), raise_at(kit, EAST)
    login(client, "west.disp")
    listing = client.get("/alerts").text
    assert f'href="/alerts/{west}"' in listing and f'href="/alerts/{east}"' not in listing
    assert client.get(f"/alerts/{east}").status_code == 404
    assert 'href="/alerts"' in client.get("/dashboard").text


def test_who_sees_the_alert_pages(client: TestClient, kit: Kit) -> None:
    assert client.get("/alerts", follow_redirects=False).status_code == 303
    client.post("/login", data={"username": "aud", "password": PASSWORD})
    assert client.get("/alerts").status_code == 403
    assert client.get("/alerts/stats").status_code == 403
    client.cookies.clear()
    client.post("/login", data={"username": "ana", "password": PASSWORD})
    assert client.get("/alerts").status_code == 403
    assert client.get("/alerts/stats").status_code == 200  # analysts see the figures


def test_statistics_page_and_client_texts(client: TestClient, kit: Kit) -> None:
    kit.entry("苏D12345", now=utcnow())
    raise_at(kit)
    login(client, "cmd")
    page = client.get("/alerts/stats?days=7")
    assert page.status_code == 200 and "echarts.min.js" in page.text
    data = page.text.split('id="alert-stats-data">', 1)[1].split("</script>", 1)[0]
    figures = json.loads(data)["figures"]
    assert figures["hits_by_reason"] == {"stolen_vehicle": 1}
    texts = client.get("/alerts/client.json").json()
    assert texts["messages"]["banner"] == "未经确认 — 处置前请目视核对号牌和车辆"
    assert texts["reasons"]["stolen_vehicle"] == "被盗抢车辆" and texts["can_handle"] is True
