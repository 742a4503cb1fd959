"""An incident made from a watch-list alert: by API and by the alert page's button."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from anwang.app import create_app
from anwang.core.db import Database
from anwang.core.events import utcnow
from anwang.dispatch.models import Incident
from anwang.settings import Settings
from anwang.watchlist import service as wl
from tests.integration.alerts.test_lifecycle import raise_at
from tests.integration.watchlist.kit import PASSWORD, Kit


@pytest.fixture
def alert_kit(db: Database) -> Iterator[Kit]:
    wl.reset_index_cache()
    k = Kit(db)
    k.seed()
    yield k
    wl.reset_index_cache()


@pytest.fixture
def client(settings: Settings, alert_kit: Kit) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db=alert_kit.db)) as c:
        yield c


def test_one_incident_per_alert(client: TestClient, alert_kit: Kit) -> None:
    alert_kit.entry("苏D12345", now=utcnow())
    aid = raise_at(alert_kit)
    h = alert_kit.token(client, "west.disp")
    r = client.post("/api/v1/incidents", json={"alert_id": aid}, headers=h)
    assert r.status_code == 201, r.text
    inc = r.json()
    assert inc["alert_id"] == aid and inc["type"] == "suspicious_vehicle"
    assert "苏D12345" in inc["description"] and inc["address"] == "西门卡口"
    assert (inc["lat"], inc["lon"]) == (31.75, 119.85)
    again = client.post("/api/v1/incidents", json={"alert_id": aid}, headers=h)
    assert again.status_code == 200 and again.json()["id"] == inc["id"]
    # the east dispatcher does not see the west's alert
    r = client.post("/api/v1/incidents", json={"alert_id": aid},
                    headers=alert_kit.token(client, "east.disp"))
    assert r.status_code in (404, 409)
    r = client.post("/api/v1/incidents", json={"alert_id": "01NOSUCHALERT0000000000000"},
                    headers=h)
    assert r.status_code == 404
    with alert_kit.db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(Incident)) == 1


def test_the_alert_page_button(client: TestClient, alert_kit: Kit) -> None:
    alert_kit.entry("苏D12345", now=utcnow())
    aid = raise_at(alert_kit)
    r = client.post("/login", data={"username": "west.disp", "password": PASSWORD},
                    follow_redirects=False)
    assert r.status_code == 303
    page = client.get(f"/alerts/{aid}")
    assert page.status_code == 200 and 'action="/dispatch/from-alert"' in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    r = client.post("/dispatch/from-alert", data={"csrf_token": csrf.group(1), "alert_id": aid},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/dispatch?incident=")
    with alert_kit.db.unit_of_work(readonly=True) as s:
        incident = s.scalars(select(Incident)).one()
        assert r.headers["location"].endswith(incident.id) and incident.alert_id == aid

    # an officer may handle alerts but not dispatch: no button
    client.cookies.clear()
    client.post("/login", data={"username": "west.off", "password": PASSWORD})
    page = client.get(f"/alerts/{aid}")
    assert page.status_code == 200 and "/dispatch/from-alert" not in page.text
