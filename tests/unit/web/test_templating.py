"""Rendering the pages in both languages, the language choice, and escaping."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from anwang.auth.deps import Principal
from anwang.auth.permissions import Role
from anwang.settings import Settings
from anwang.web.pages import safe_next
from anwang.web.templating import (
    choose_locale,
    client_messages,
    environment,
    normalise_locale,
    render_string,
    security_headers,
    tile_origin,
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(env="test", data_dir=tmp_path, secret_key="test-secret-key-0123456789")


def principal(role: Role = Role.DISPATCHER, *, locale: str | None = None,
              name: str = "wang.wei", jurisdiction: str | None = "3201") -> Principal:
    return Principal(kind="user", id=1, name=name, role=role, jurisdiction=jurisdiction,
                     locale=locale, session_id=7, csrf_token="csrf-token-123")


def fake_request(path: str = "/dashboard", cookies: dict[str, str] | None = None) -> Any:
    url = SimpleNamespace(path=path, query="")
    return SimpleNamespace(url=url, cookies=cookies or {})


def page(template: str, locale: str, settings: Settings, p: Principal | None = None,
         **context: Any) -> str:
    return render_string(template, {"request": fake_request(), **context}, locale=locale,
                         settings=settings, principal=p)


def login_context() -> dict[str, Any]:
    return {"problem": None, "next_url": "", "username": "", "focus_totp": False}


def test_login_page_renders_in_chinese(settings: Settings) -> None:
    html = page("login.html", "zh_CN", settings, **login_context())
    assert '<html lang="zh-CN"' in html
    assert "登录安网" in html and "用户名" in html and "密码" in html and "验证码" in html
    assert "<title>登录 · 安网</title>" in html
    assert "Sign in" not in html


def test_login_page_renders_in_english(settings: Settings) -> None:
    html = page("login.html", "en", settings, **login_context())
    assert '<html lang="en"' in html
    assert "Sign in to anwang" in html and "Username" in html and "Password" in html
    assert "登录安网" not in html
    # The brand and the language switch are bilingual in every language.
    assert "安网" in html and "中文" in html


def test_login_problem_is_shown(settings: Settings) -> None:
    ctx = login_context() | {
        "problem": {"code": "anwang.auth.account_locked", "title": "账号已锁定",
                    "message": "<b>locked</b>"},
    }
    html = page("login.html", "zh_CN", settings, **ctx)
    assert 'role="alert"' in html and "problem-locked" in html and "账号已锁定" in html
    assert "&lt;b&gt;locked&lt;/b&gt;" in html  # autoescaped


def test_navigation_follows_the_permissions(settings: Settings) -> None:
    ctx = {"grid_min_zoom": 13, "active_nav": "dashboard"}
    dispatcher = page("dashboard.html", "zh_CN", settings, principal(Role.DISPATCHER), **ctx)
    assert 'href="/dashboard"' in dispatcher and "实时地图" in dispatcher
    assert 'href="/audit"' not in dispatcher
    assert "调度员" in dispatcher  # the role, translated

    audit_ctx = {"active_nav": "audit", "filters": {}, "filter_error": None, "entries": [],
                 "before_seq": None, "more_url": None}
    auditor = page("audit.html", "en", settings, principal(Role.AUDITOR), **audit_ctx)
    assert 'href="/audit"' in auditor and "Audit trail" in auditor
    assert 'href="/dashboard"' not in auditor
    assert "No entries match these filters." in auditor


def test_forms_of_a_signed_in_page_carry_the_csrf_token(settings: Settings) -> None:
    html = page("dashboard.html", "en", settings, principal(), grid_min_zoom=13)
    logout = re.search(r'<form method="post" action="/logout">(.*?)</form>', html, re.S)
    assert logout is not None and 'name="csrf_token" value="csrf-token-123"' in logout.group(1)
    assert 'hx-headers=\'{"X-CSRF-Token": "csrf-token-123"}\'' in html


def test_dashboard_passes_translated_texts_to_its_scripts(settings: Settings) -> None:
    html = page("dashboard.html", "zh_CN", settings, principal(), grid_min_zoom=13)
    block = re.search(r'<script type="application/json" id="anwang-i18n">(.*?)</script>', html)
    assert block is not None
    data = json.loads(block.group(1))
    assert data["locale"] == "zh_CN"
    assert data["messages"]["connected"] == "实时"
    assert data["events"]["anwang.system.notice.published"] == "系统通知"
    assert 'data-grid-min-zoom="13"' in html


def test_script_json_cannot_close_its_element() -> None:
    value = {"x": "</script><script>alert(1)</script>", "y": "a & b"}
    html = environment().from_string("{{ value|script_json }}").render(value=value)
    assert "<" not in html and ">" not in html and "&" not in html
    assert json.loads(html) == value


def test_user_content_is_escaped(settings: Settings) -> None:
    html = page("dashboard.html", "en", settings,
                principal(name='<img src=x onerror="alert(1)">'), grid_min_zoom=13)
    assert "<img src=x" not in html and "&lt;img src=x" in html


def test_plural_forms(settings: Settings) -> None:
    result = SimpleNamespace(ok=True, checked=1, head_seq=1, head_hash="ab" * 32)
    assert "1 entry checked, head #1" in page("_audit_verify.html", "en", settings,
                                               result=result)
    result.checked = 5
    assert "5 entries checked, head #1" in page("_audit_verify.html", "en", settings,
                                                 result=result)
    assert "已核验 5 条记录，链头 #1" in page("_audit_verify.html", "zh_CN", settings,
                                          result=result)


def test_error_page(settings: Settings) -> None:
    html = page("error.html", "zh_CN", settings, principal(), status=403, title="无权访问",
                message="您的角色无权访问此页面。", code="anwang.auth.permission_denied",
                home_url="/dashboard")
    assert "403" in html and "无权访问" in html and "返回首页" in html


@pytest.mark.parametrize(
    ("value", "expected"),
    [("zh_CN", "zh_CN"), ("zh-CN", "zh_CN"), ("zh", "zh_CN"), ("ZH_cn", "zh_CN"),
     ("en", "en"), ("en-GB", "en"), ("fr", None), ("", None), (None, None)],
)
def test_normalise_locale(value: str | None, expected: str | None) -> None:
    assert normalise_locale(value) == expected


def test_locale_precedence(settings: Settings) -> None:
    assert choose_locale(fake_request(), settings, None) == "zh_CN"
    assert choose_locale(fake_request(cookies={"lang": "en"}), settings, None) == "en"
    assert choose_locale(fake_request(cookies={"lang": "en"}), settings,
                         principal(locale="zh_CN")) == "zh_CN"
    assert choose_locale(fake_request(cookies={"lang": "xx"}), settings, None) == "zh_CN"
    english_bureau = settings.model_copy(update={"locale": "en"})
    assert choose_locale(fake_request(), english_bureau, principal(locale=None)) == "en"


def test_client_messages_are_complete_in_both_languages() -> None:
    zh, en = client_messages("zh_CN"), client_messages("en")
    assert zh["messages"].keys() == en["messages"].keys()  # type: ignore[union-attr]
    assert en["messages"]["districts"] == "Districts"  # type: ignore[index]
    assert zh["messages"]["districts"] != "Districts"  # type: ignore[index]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("/dashboard", "/dashboard"), ("/audit?actor=x", "/audit?actor=x"),
     ("//evil.example/x", None), ("/\\evil.example", None), ("https://evil.example/", None),
     ("dashboard", None), ("/login", None), ("/logout", None), ("/api/v1/stream", None),
     ("/x\r\nSet-Cookie: a=b", None), ("", None), (None, None)],
)
def test_safe_next(value: str | None, expected: str | None) -> None:
    assert safe_next(value) == expected


def test_the_language_switch_may_return_to_the_sign_in_page() -> None:
    assert safe_next("/login?next=%2Faudit", allow_login=True) == "/login?next=%2Faudit"
    assert safe_next("//evil.example/login", allow_login=True) is None


def test_tile_origin_and_csp(settings: Settings) -> None:
    assert tile_origin("") is None
    assert tile_origin("https://{s}.tile.example.org/{z}/{x}/{y}.png") == (
        "https://*.tile.example.org"
    )
    assert tile_origin("http://tiles.local:8080/{z}/{x}/{y}.png") == "http://tiles.local:8080"
    assert tile_origin("javascript:alert(1)") is None
    csp = security_headers(settings)["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    with_tiles = settings.model_copy(update={"tile_url": "https://t.example.cn/{z}/{x}/{y}.png"})
    assert "img-src 'self' data: https://t.example.cn" in (
        security_headers(with_tiles)["Content-Security-Policy"]
    )
