"""The public transparency report in a real Chromium, without signing in: the charts are
drawn (no console error, so the page keeps to the CSP), the language switch works before
sign-in, and a phone shows every figure without sideways scrolling. Screenshots go to
``/tmp/anwang-shots/``.

Skips when Debian's Chromium is missing — unless ``ANWANG_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher

from anwang.app import create_app
from anwang.auth import service as auth_service
from anwang.core.db import Base, Database
from anwang.settings import Settings
from anwang.watchlist import service as wl
from tests.browser.kit import DESKTOP, PHONE, SHOTS, LiveServer, PageErrors, require_chromium
from tests.integration.transparency.kit import SECRETS, build_city
from tests.integration.watchlist.kit import Kit

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    require_chromium()
    data_dir = tmp_path_factory.mktemp("anwang-transparency-browser")
    settings = Settings(env="test", data_dir=data_dir,
                        secret_key="browser-test-secret-0123456789")
    import anwang.schema  # noqa: F401  (every table on Base.metadata)

    db = Database(settings.resolved_database_url)
    Base.metadata.create_all(db.engine)
    wl.reset_index_cache()
    kit = Kit(db)
    with pytest.MonkeyPatch.context() as mp:  # these people never sign in
        mp.setattr(auth_service, "_hasher",
                   PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        kit.seed()
    build_city(kit, settings)
    live = LiveServer.start(create_app(settings, db=db), name="anwang-transparency-server")
    yield live
    live.stop()
    wl.reset_index_cache()
    db.dispose()


@pytest.mark.parametrize(("locale", "viewport", "title"), [
    ("zh_CN", DESKTOP, "透明度报告"), ("en", DESKTOP, "Transparency report"),
    ("zh_CN", PHONE, "透明度报告"), ("en", PHONE, "Transparency report"),
])
def test_anyone_reads_the_report(server: LiveServer, browser: Any, locale: str,
                                 viewport: dict[str, int], title: str) -> None:
    context = browser.new_context(viewport=viewport, locale="zh-CN",
                                  is_mobile=viewport is PHONE)
    page = context.new_page()
    errors = PageErrors(page)
    page.goto(f"{server.url}/login")
    page.click(".login-note a[href='/transparency']")
    page.wait_for_url(f"{server.url}/transparency")
    if locale == "en":
        page.click(".lang-switch button[value=en]")
        page.wait_for_url(f"{server.url}/transparency")
    assert page.inner_text("h1") == title
    page.wait_for_function("window.anwangTransparencyCharts && "
                           "Object.keys(window.anwangTransparencyCharts).length === 2")
    assert page.evaluate("window.anwangTransparencyCharts") == {
        "chart-searches": 1, "chart-hits": 1}
    assert page.inner_text("#kpi-searches") == "3"
    assert page.get_attribute("#audit-verified", "data-verified") == "true"
    # Nothing runs off the side of a phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    text = page.inner_text("body")
    for secret in SECRETS:
        assert secret not in text
    size = "phone" if viewport is PHONE else "desktop"
    page.screenshot(path=str(SHOTS / f"transparency-{locale}-{size}.png"), full_page=True)
    assert errors.items == []
    context.close()
