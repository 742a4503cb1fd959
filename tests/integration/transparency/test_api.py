"""``GET /api/v1/transparency`` and ``GET /transparency``: open without signing in,
cache-friendly, in both languages, and free of anything identifying."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from anwang.transparency.api import report_cache
from tests.integration.transparency.kit import SECRETS, City
from tests.integration.watchlist.kit import PASSWORD


def test_the_report_is_public_and_cacheable(client: TestClient, city: City) -> None:
    r = client.get("/api/v1/transparency")
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "public, max-age=300"
    got = r.json()
    expected = city.report().model_dump(mode="json", by_alias=True)
    for key in ("checkpoints", "reads", "retention", "watchlist", "alerts", "access"):
        assert got[key] == expected[key], key
    assert got["period"]["days"] == 30
    assert got["audit"]["verified"] is True
    for secret in SECRETS:
        assert secret not in r.text, f"the report contains {secret!r}"


def test_a_report_is_computed_at_most_every_five_minutes(
    client: TestClient, city: City
) -> None:
    first = client.get("/api/v1/transparency?days=7").json()
    city.search("court_order")
    assert client.get("/api/v1/transparency?days=7").json() == first
    report_cache(client.app.state.anwang).clear()  # type: ignore[attr-defined]
    fresh = client.get("/api/v1/transparency?days=7").json()
    assert fresh["access"]["searches"]["by_reason"]["court_order"] == first["access"][
        "searches"]["by_reason"]["court_order"] + 1


@pytest.mark.parametrize("days", ["0", "367", "thirty"])
def test_a_bad_period_is_a_problem(bare_client: TestClient, days: str) -> None:
    r = bare_client.get("/api/v1/transparency", params={"days": days})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "anwang.validation_failed"
    assert [e["field"] for e in r.json()["errors"]] == ["days"]
    assert "public" not in r.headers.get("cache-control", "")


@pytest.mark.parametrize(("lang", "title", "reason"), [
    ("zh_CN", "透明度报告", "法院令"), ("en", "Transparency report", "Court order"),
])
def test_the_page_is_public_in_both_languages(
    client: TestClient, city: City, lang: str, title: str, reason: str
) -> None:
    client.cookies.set("lang", lang)
    r = client.get("/transparency")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "public, max-age=300"
    assert r.headers["content-language"] == ("zh-CN" if lang == "zh_CN" else "en")
    html = r.text
    assert f"<h1>{title}</h1>" in html
    assert reason in html  # a search reason, by its label
    assert 'id="kpi-searches">3<' in html and 'id="kpi-checkpoints">2<' in html
    assert 'data-verified="true"' in html
    assert 'href="/transparency" aria-current="page"' in html  # in the visitors' nav
    for secret in SECRETS:
        assert secret not in html, f"the page contains {secret!r}"


def test_the_page_takes_a_period_and_is_linked_from_the_sign_in_page(
    client: TestClient, city: City
) -> None:
    assert 'value="90" selected' in client.get("/transparency?days=90").text
    assert 'value="30" selected' in client.get("/transparency?days=oops").text
    assert 'href="/transparency"' in client.get("/login").text


def test_a_signed_in_users_page_is_not_cached_by_others(
    client: TestClient, city: City
) -> None:
    r = client.post("/login", data={"username": "cmd", "password": PASSWORD},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    r = client.get("/transparency")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    assert 'class="user-panel-link"' in r.text
