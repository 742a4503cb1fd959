"""``GET /transparency``: the report as a page anyone can open, in the visitor's language
(the ``lang`` cookie or the bureau's default; a signed-in user's own choice), sized for
a phone. Charts are drawn by ``static/js/transparency.js`` from the page's JSON block;
every figure of a chart is also in a table, for readers without script or sight.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from anwang.alerts.pages import OUTCOME_SHORT
from anwang.auth.deps import OptionalPrincipal
from anwang.checkpoints.pages import KIND_LABELS as CHECKPOINT_KIND_LABELS
from anwang.checkpoints.pages import REASON_LABELS as SEARCH_REASON_LABELS
from anwang.state import AppState
from anwang.transparency import service
from anwang.transparency.api import CACHE_CONTROL, current_report
from anwang.transparency.schemas import TransparencyReport
from anwang.watchlist.pages import REASON_LABELS as WATCHLIST_REASON_LABELS
from anwang.web.templating import choose_locale, render, translations

router = APIRouter(include_in_schema=False)

#: The periods offered on the page (the API takes any 1..366).
PERIODS = (7, 30, 90, 365)


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.anwang
    return state


def _days(value: str | None) -> int:
    try:
        days = int(value or service.DEFAULT_DAYS)
    except ValueError:
        return service.DEFAULT_DAYS
    return max(1, min(service.MAX_DAYS, days))


def _label(labels: dict[str, str], t: Any, key: str) -> str:
    """A code's label in the reader's language; a code without one (a search reason the
    bureau added, say) is shown as it is."""
    return str(t.gettext(labels[key])) if key in labels else key


def chart_data(report: TransparencyReport, t: Any) -> dict[str, Any]:
    """What the charts draw, labels already translated."""
    access = report.access
    reasons = sorted(set(access.searches.by_reason) | set(access.exports.by_reason))
    hits = sorted(report.alerts.hits_by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "searches": {
            "reasons": [_label(SEARCH_REASON_LABELS, t, r) for r in reasons],
            "searches": [access.searches.by_reason.get(r, 0) for r in reasons],
            "exports": [access.exports.by_reason.get(r, 0) for r in reasons],
        },
        "hits": [{"name": _label(WATCHLIST_REASON_LABELS, t, r), "value": n} for r, n in hits],
        "texts": {
            "searches": t.gettext("Searches"),
            "exports": t.gettext("Exports"),
            "hits": t.gettext("Hits"),
            "no_data": t.gettext("No data in this period."),
        },
    }


@router.get("/transparency")
def transparency_page(request: Request, principal: OptionalPrincipal) -> Response:
    state = _state(request)
    days = _days(request.query_params.get("days"))
    report = current_report(state, days=days)
    t = translations(choose_locale(request, state.settings, principal))
    search_reasons = sorted(
        set(report.access.searches.by_reason) | set(report.access.exports.by_reason)
    )
    wl = report.watchlist
    watch_reasons = sorted(
        set(wl.active.by_reason) | set(wl.created.by_reason) | set(wl.approved.by_reason)
        | set(wl.revoked.by_reason) | set(wl.expired.by_reason)
        | set(report.alerts.hits_by_reason)
    )
    # A page for a signed-in user carries their name and form token: never cache it
    # outside their browser. The anonymous page is the same for every visitor of a
    # language, like the JSON.
    headers = {"Cache-Control": CACHE_CONTROL} if principal is None else None
    return render(request, "transparency/report.html", {
        "active_nav": "transparency",
        "report": report,
        "days": days,
        "periods": PERIODS if days in PERIODS else tuple(sorted((*PERIODS, days))),
        "search_reasons": search_reasons,
        "watch_reasons": watch_reasons,
        "search_reason_labels": SEARCH_REASON_LABELS,
        "watch_reason_labels": WATCHLIST_REASON_LABELS,
        "kind_labels": CHECKPOINT_KIND_LABELS,
        "outcome_labels": OUTCOME_SHORT,
        "chart_data": chart_data(report, t),
    }, principal, headers=headers)
