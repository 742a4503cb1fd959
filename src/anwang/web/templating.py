"""Server-rendered pages: one Jinja2 environment, translated per request.

The environment is built once per process (lazily, on the first render) with
autoescaping and ``jinja2.ext.i18n``. Translations are *not* installed on the
environment: pages render in several languages at once from the thread pool, and
environment globals are shared. Instead each render passes its own ``gettext`` /
``ngettext`` / ``_`` in the template context, where the i18n extension looks them up
(context variables shadow globals, and ``{% include %}`` passes the context on).
They follow Jinja's "new style" gettext: the result is always %-formatted with the
keyword arguments, so a literal percent sign in a msgid is written ``%%``.

The language of a response is, in order: the signed-in user's own choice
(``principal.locale``), the ``lang`` cookie (set by the language switch, also before
sign-in), the bureau's default (``settings.locale``). Catalogues live in
``anwang/locale/<locale>/LC_MESSAGES/anwang.mo``; see ``docs/i18n.md``.
"""

from __future__ import annotations

import gettext as gettext_module
import json
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup

from anwang import __version__
from anwang.settings import Settings

if TYPE_CHECKING:
    from anwang.auth.deps import Principal

TEMPLATE_DIR = Path(__file__).parent / "templates"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
DOMAIN = "anwang"

#: Interface languages, in the order the language switch shows them.
SUPPORTED_LOCALES: tuple[str, ...] = ("zh_CN", "en")
#: The cookie that remembers a visitor's language choice (also before sign-in).
LANG_COOKIE = "lang"
#: The value of ``<html lang>`` for each locale (BCP 47).
HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}


def N_(message: str) -> str:  # noqa: N802 - the conventional gettext marker name
    """Mark ``message`` for extraction without translating it now (it is translated
    where it is shown)."""
    return message


#: How each role is named on the pages (keys are :class:`anwang.auth.permissions.Role`
#: values; a role missing here is shown by its value).
ROLE_LABELS: dict[str, str] = {
    "admin": N_("Administrator"),
    "commander": N_("Commander"),
    "dispatcher": N_("Dispatcher"),
    "analyst": N_("Analyst"),
    "officer": N_("Officer"),
    "grid_worker": N_("Grid worker"),
    "business": N_("Business"),
    "auditor": N_("Auditor"),
    "device": N_("Device"),
}

#: How the live feed names an event. Domains add their event names here; a name missing
#: here is shown as it is. ``static/js/feed.js`` reads this table from the page.
EVENT_LABELS: dict[str, str] = {
    "anwang.system.notice.published": N_("System notice"),
    "anwang.dispatch.incident.created": N_("Incident received"),
    "anwang.dispatch.incident.updated": N_("Incident updated"),
    "anwang.dispatch.unit.created": N_("Unit registered"),
    "anwang.dispatch.unit.assigned": N_("Unit assigned"),
    "anwang.dispatch.unit.status_changed": N_("Unit status changed"),
    "anwang.dispatch.unit.moved": N_("Unit position"),
    "anwang.dispatch.instruction.sent": N_("Instruction sent"),
    "anwang.dispatch.instruction.acknowledged": N_("Instruction acknowledged"),
    "anwang.dispatch.instruction.escalated": N_("Instruction escalated: not acknowledged"),
    "anwang.dispatch.post.changed": N_("Post changed"),
    "anwang.checkpoints.checkpoint.went_offline": N_("Checkpoint offline"),
    "anwang.checkpoints.checkpoint.came_online": N_("Checkpoint back online"),
    "anwang.alerts.alert.raised": N_("Watch-list alert"),
    "anwang.alerts.alert.updated": N_("Watch-list alert: seen again"),
    "anwang.alerts.alert.escalated": N_("Watch-list alert escalated"),
    "anwang.alerts.alert.acknowledged": N_("Alert acknowledged"),
    "anwang.alerts.alert.closed": N_("Alert closed"),
    "anwang.watchlist.entry.created": N_("Watch-list entry awaiting approval"),
    "anwang.watchlist.entry.approved": N_("Watch-list entry approved"),
    "anwang.watchlist.entry.revoked": N_("Watch-list entry revoked"),
    "anwang.watchlist.entry.renewed": N_("Watch-list entry renewed"),
    "anwang.watchlist.entry.expired": N_("Watch-list entry expired"),
    "anwang.watchlist.batch.imported": N_("Watch list imported, awaiting approval"),
    "anwang.watchlist.batch.approved": N_("Imported watch list approved"),
    "anwang.communities.alarm.raised": N_("Community device alarm"),
    "anwang.communities.alarm.escalated": N_("Community device alarm escalated"),
    "anwang.communities.alarm.acknowledged": N_("Device alarm acknowledged"),
    "anwang.communities.alarm.cleared": N_("Device alarm cleared"),
    "anwang.communities.alarm.closed": N_("Device alarm closed"),
    "anwang.communities.outage.detected": N_("Community devices offline"),
}

#: Texts that the page's JavaScript shows (``static/js/map.js`` and ``feed.js`` read
#: them from the ``anwang-i18n`` JSON block of the dashboard).
CLIENT_MESSAGES: dict[str, str] = {
    "connecting": N_("Connecting…"),
    "connected": N_("Live"),
    "reconnecting": N_("Reconnecting…"),
    "waiting": N_("Waiting for events…"),
    "districts": N_("Districts"),
    "stations": N_("Police stations"),
    "grids": N_("Grids"),
    "grids_hint": N_("Grids (zoom in to see)"),
    "roads": N_("Roads"),
    "events": N_("Live events"),
    "basemap": N_("Basemap"),
    "legend": N_("Legend"),
    "code": N_("Code"),
    "level_city": N_("City"),
    "level_district": N_("District"),
    "level_station": N_("Police station"),
    "level_grid": N_("Grid"),
    "map_error": N_("Some map layers could not be loaded."),
    "no_jurisdictions": N_("No jurisdictions are loaded yet."),
    "show_on_map": N_("Show on map"),
}


def role_label(role: str | None) -> str:
    """The untranslated label of ``role`` (templates pass it through ``_``)."""
    if role is None:
        return ""
    return ROLE_LABELS.get(str(role), str(role))


def client_messages(locale: str) -> dict[str, object]:
    """The translated texts for the dashboard's scripts, with the event labels."""
    t = translations(locale)
    return {
        "locale": locale,
        "messages": {k: t.gettext(v) for k, v in CLIENT_MESSAGES.items()},
        "events": {k: t.gettext(v) for k, v in EVENT_LABELS.items()},
    }


def normalise_locale(value: str | None) -> str | None:
    """Map ``zh``, ``zh-CN``, ``zh_cn``, ``en-GB``... onto a supported locale, else None."""
    if not value:
        return None
    v = value.strip().replace("-", "_")
    for loc in SUPPORTED_LOCALES:
        if v.lower() == loc.lower():
            return loc
    lang = v.split("_", 1)[0].lower()
    for loc in SUPPORTED_LOCALES:
        if loc.split("_", 1)[0].lower() == lang:
            return loc
    return None


@lru_cache(maxsize=len(SUPPORTED_LOCALES))
def translations(locale: str) -> gettext_module.NullTranslations:
    """The compiled catalogue of a supported locale.

    A missing ``.mo`` of a supported locale is an installation error and raises
    ``FileNotFoundError`` (the i18n test catches it before release); any other locale
    falls back to the English msgids.
    """
    if locale not in SUPPORTED_LOCALES:
        return gettext_module.NullTranslations()
    return gettext_module.translation(DOMAIN, localedir=str(LOCALE_DIR), languages=[locale])


def choose_locale(
    request: Request, settings: Settings, principal: Principal | None = None
) -> str:
    """The user's own choice, else the ``lang`` cookie, else the bureau's default."""
    for candidate in (
        principal.locale if principal is not None else None,
        request.cookies.get(LANG_COOKIE),
        settings.locale,
    ):
        loc = normalise_locale(candidate)
        if loc is not None:
            return loc
    return SUPPORTED_LOCALES[0]


def _gettext_callables(t: gettext_module.NullTranslations) -> dict[str, Callable[..., str]]:
    """Context-level ``gettext``/``ngettext`` that escape like Jinja's new-style ones."""

    @pass_context
    def gettext_(ctx: Context, message: str, **variables: Any) -> str:
        rv: str = t.gettext(message)
        if ctx.eval_ctx.autoescape:
            rv = Markup(rv)
        return rv % variables

    @pass_context
    def ngettext_(ctx: Context, singular: str, plural: str, num: int, **variables: Any) -> str:
        variables.setdefault("num", num)
        rv: str = t.ngettext(singular, plural, num)
        if ctx.eval_ctx.autoescape:
            rv = Markup(rv)
        return rv % variables

    return {"gettext": gettext_, "_": gettext_, "ngettext": ngettext_}


def static_url(path: str) -> str:
    """URL of a file under ``web/static``, versioned so that an upgrade is not hidden by
    a browser's cache."""
    return f"/static/{path.lstrip('/')}?v={__version__}"


def _pretty_json(value: Any) -> str:
    """Readable JSON (Chinese kept as characters); autoescaping escapes it."""
    return json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True, default=str)


def _tojson_script(value: Any) -> Markup:
    """JSON for a ``<script type="application/json">`` block: ``<``, ``>`` and ``&`` are
    escaped so that no string can close the element."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=select_autoescape(("html", "xml"), default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Only sets newstyle_gettext and a harmless English fallback; the real callables
    # are passed per render (see the module docstring).
    env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    env.globals["static_url"] = static_url
    env.globals["supported_locales"] = SUPPORTED_LOCALES
    env.globals["role_label"] = role_label
    env.globals["client_messages"] = client_messages
    env.filters["script_json"] = _tojson_script
    env.filters["pretty_json"] = _pretty_json
    return env


def tile_origin(tile_url: str) -> str | None:
    """The CSP source of a tile URL template: ``https://{s}.tile.example.org/{z}/...`` is
    ``https://*.tile.example.org``."""
    if not tile_url:
        return None
    parts = urlsplit(tile_url)
    host = parts.netloc
    if parts.scheme not in ("http", "https") or not host:
        return None
    if "{s}" in host:
        # Leaflet fills {s} with a subdomain; CSP allows a wildcard only as the first label.
        host = "*." + host.split(".", 1)[1] if "." in host else "*"
    return f"{parts.scheme}://{host}"


def security_headers(settings: Settings) -> dict[str, str]:
    """Headers sent with every page: no inline script, no framing, no referrer leak.

    The pages keep all script in ``/static/js`` and pass data through
    ``<script type="application/json">`` blocks and ``data-`` attributes, which is what
    lets ``script-src 'self'`` stand. Styles allow ``'unsafe-inline'`` because Leaflet
    and htmx position elements with style attributes.
    """
    img = "'self' data:"
    origin = tile_origin(settings.tile_url)
    if origin:
        img += " " + origin
    csp = "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            f"img-src {img}",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def render_string(
    template: str,
    context: Mapping[str, Any],
    *,
    locale: str,
    settings: Settings,
    principal: Principal | None = None,
) -> str:
    """Render ``template`` in ``locale`` (no request needed: tests and partials use it)."""
    t = translations(locale)
    ctx: dict[str, Any] = {
        **_gettext_callables(t),
        "principal": principal,
        "csrf_token": principal.csrf_token if principal is not None else "",
        "settings": settings,
        "current_locale": locale,
        "html_lang": HTML_LANG.get(locale, "en"),
        "can": (lambda action: principal is not None and principal.can(action)),
    }
    ctx.update(context)
    return environment().get_template(template).render(ctx)


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    principal: Principal | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Render a page (or an htmx partial) for ``request`` in the chosen language."""
    settings: Settings = request.app.state.anwang.settings
    locale = choose_locale(request, settings, principal)
    body = render_string(
        template,
        {"request": request, **(context or {})},
        locale=locale,
        settings=settings,
        principal=principal,
    )
    all_headers = security_headers(settings)
    all_headers["Content-Language"] = HTML_LANG.get(locale, "en")
    all_headers["Vary"] = "Cookie"
    if headers:
        all_headers.update(headers)
    return HTMLResponse(body, status_code=status_code, headers=all_headers)
