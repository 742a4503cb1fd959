"""The checkpoint pages through a browser session: who sees what, the forms (with CSRF),
and the read search, audited once per search."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from tests.integration.checkpoints.conftest import EAST, PASSWORD, Kit, a_read, now

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
HTML = {"Accept": "text/html"}
SEARCHED = "anwang.checkpoints.reads.searched"


def login(kit: Kit, username: str) -> str:
    """Sign in through the form; returns the CSRF token of the session."""
    r = kit.client.post("/login", data={"username": username, "password": PASSWORD},
                        follow_redirects=False)
    assert r.status_code == 303, r.text
    page = kit.client.get("/checkpoints" if username != "auditor" else "/audit")
    m = CSRF.search(page.text)
    assert m is not None
    return m.group(1)


def json_block(html: str, block_id: str) -> object:
    m = re.search(rf'<script type="application/json" id="{block_id}">(.*?)</script>', html,
                  re.S)
    assert m is not None, block_id
    return json.loads(m.group(1))


@pytest.fixture
def cams(kit: Kit) -> Kit:
    kit.add_checkpoint("W-01")
    kit.add_checkpoint("E-01", at=EAST, kind="toll_station")
    kit.post_reads([a_read("W-01", at=now() - timedelta(minutes=5)),
                    a_read("W-01", "苏E54321", at=now() - timedelta(minutes=4)),
                    a_read("E-01", at=now() - timedelta(minutes=2))])
    kit.drain()
    return kit


def test_the_map_and_health_table_for_a_dispatcher(cams: Kit) -> None:
    login(cams, "dispatcher")
    r = cams.client.get("/checkpoints")
    assert r.status_code == 200
    assert 'href="/checkpoints"' in r.text and 'aria-current="page"' in r.text
    assert "W-01" in r.text and "E-01" not in r.text  # the dispatcher's district only
    markers = json_block(r.text, "cp-markers")
    assert markers == [{"code": "W-01", "name": "Checkpoint W-01", "kind": "police_checkpoint",
                        "lat": 31.74, "lon": 119.85, "status": "online", "reads_24h": 2}]
    assert "在线" in r.text  # Chinese by default
    assert "登记卡口" not in r.text  # no register form without checkpoints.manage
    assert 'href="/reads/search"' not in r.text  # no search link without reads.search


def test_filters(cams: Kit) -> None:
    login(cams, "analyst")
    r = cams.client.get("/checkpoints?kind=toll_station")
    assert [m["code"] for m in json_block(r.text, "cp-markers")] == ["E-01"]  # type: ignore[index, union-attr]
    r = cams.client.get("/checkpoints?status=never")
    assert json_block(r.text, "cp-markers") == []


def test_auditors_and_strangers_do_not_see_checkpoints(cams: Kit) -> None:
    r = cams.client.get("/checkpoints", headers=HTML, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    login(cams, "auditor")
    assert cams.client.get("/checkpoints", headers=HTML).status_code == 403
    assert cams.client.get("/checkpoints/W-01", headers=HTML).status_code == 403


def test_the_detail_page(cams: Kit) -> None:
    login(cams, "commander")
    r = cams.client.get("/checkpoints/W-01")
    assert r.status_code == 200
    assert r.text.count('class="cp-bar"') == 25
    assert "/reads/search?checkpoint=W-01" in r.text
    assert cams.client.get("/checkpoints/NOPE", headers=HTML).status_code == 404


def test_an_administrator_registers_changes_and_deactivates(cams: Kit) -> None:
    token = login(cams, "admin")
    form = {"csrf_token": token, "code": "W-99", "name": "新卡口", "kind": "road",
            "lat": "31.75", "lon": "119.86", "lanes": "3", "silence_threshold_s": "600",
            "direction_in": "true"}
    r = cams.client.post("/checkpoints", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/checkpoints/W-99"
    (created,) = [e for e in cams.audit("anwang.checkpoints.checkpoint.created")
                  if e.subject == "W-99"]
    assert created.actor == "admin" and created.data is not None
    assert created.data["via"] == "web" and created.data["directions"] == ["in"]

    bad = cams.client.post("/checkpoints", data={**form, "code": "W-98", "lat": "north"})
    assert bad.status_code == 422 and "lat" in bad.text
    assert cams.client.post("/checkpoints", data={**form, "csrf_token": "x"}).status_code == 403

    r = cams.client.post("/checkpoints/W-99", data={
        "csrf_token": token, "name": "改名", "kind": "road", "lat": "31.75", "lon": "119.86",
        "lanes": "3", "silence_threshold_s": "600", "direction_in": "true",
        "direction_out": "true"}, follow_redirects=False)
    assert r.status_code == 303
    (updated,) = cams.audit("anwang.checkpoints.checkpoint.updated")
    assert updated.data is not None
    assert set(updated.data["changes"]) == {"name", "directions"}

    r = cams.client.post("/checkpoints/W-99", data={"csrf_token": token, "active": "false"},
                         follow_redirects=False)
    assert r.status_code == 303
    assert [e.subject for e in cams.audit("anwang.checkpoints.checkpoint.deactivated")] == [
        "W-99"]


def test_others_cannot_use_the_forms(cams: Kit) -> None:
    token = login(cams, "analyst")
    r = cams.client.post("/checkpoints", headers=HTML, data={
        "csrf_token": token, "code": "X-1", "name": "x", "kind": "road", "lat": "31.75",
        "lon": "119.86"})
    assert r.status_code == 403
    r = cams.client.post("/checkpoints/W-01", headers=HTML,
                         data={"csrf_token": token, "active": "false"})
    assert r.status_code == 403
    assert cams.audit("anwang.checkpoints.checkpoint.deactivated") == []


# --- the read search --------------------------------------------------------------------------


def test_the_search_form_and_who_may_use_it(cams: Kit) -> None:
    login(cams, "analyst")
    r = cams.client.get("/reads/search?checkpoint=W-01")
    assert r.status_code == 200 and 'name="case_ref"' in r.text and 'value="W-01"' in r.text
    assert 'href="/reads/search"' in r.text
    assert cams.audit(SEARCHED) == []  # showing the form searches nothing

    cams.client.post("/logout", data={"csrf_token": CSRF.search(r.text).group(1)})  # type: ignore[union-attr]
    login(cams, "admin")
    assert cams.client.get("/reads/search", headers=HTML).status_code == 403
    token = CSRF.search(cams.client.get("/checkpoints").text).group(1)  # type: ignore[union-attr]
    r = cams.client.post("/reads/search", headers=HTML,
                         data={"csrf_token": token, "case_ref": "C-1",
                               "reason": "investigation", "plate": "苏D12345"})
    assert r.status_code == 403 and cams.audit(SEARCHED) == []


def test_a_refused_search_shows_why_and_records_nothing(cams: Kit) -> None:
    token = login(cams, "analyst")
    r = cams.client.post("/reads/search", data={"csrf_token": token, "plate": "苏D12345",
                                                 "reason": "investigation"})
    assert r.status_code == 422 and "case_ref" in r.text
    assert cams.audit(SEARCHED) == []


def test_a_search_draws_the_route_and_is_audited_once(cams: Kit) -> None:
    token = login(cams, "commander")
    r = cams.client.post("/reads/search", data={
        "csrf_token": token, "case_ref": "2026-0042", "reason": "stolen_vehicle",
        "plate": "苏D12345", "window": "6", "tz": "480"})
    assert r.status_code == 200, r.text
    route = json_block(r.text, "cp-route")
    assert [p["checkpoint"] for p in route] == ["W-01", "E-01"]  # type: ignore[index, union-attr]
    assert "/api/v1/reads/export?format=csv&amp;" in r.text
    (entry,) = cams.audit(SEARCHED)
    assert entry.case_ref == "2026-0042" and entry.result_count == 2
    assert entry.data is not None and entry.data["via"] == "web"


def test_typed_times_are_read_in_the_browsers_offset(cams: Kit) -> None:
    token = login(cams, "analyst")
    # Three minutes ago on a clock at UTC+8, to the minute: after the W-01 read (four
    # minutes ago), before the E-01 read (two minutes ago).
    since = (now() - timedelta(minutes=3) + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M")
    r = cams.client.post("/reads/search", data={
        "csrf_token": token, "case_ref": "C-2", "reason": "investigation", "plate": "苏D12345",
        "from": since, "tz": "480"})
    assert r.status_code == 200, r.text
    assert [p["checkpoint"] for p in json_block(r.text, "cp-route")] == ["E-01"]  # type: ignore[index, union-attr]
