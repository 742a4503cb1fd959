"""``GET /api/v1/transparency``: the report as JSON, for anyone, without signing in.

The route is public (listed in :data:`anwang.auth.api.PUBLIC_ROUTES`), so it must stay
cheap whoever calls it and however often: each process computes a report for a given
``days`` at most once every :data:`CACHE_SECONDS` and serves that copy in between
(``Cache-Control: public, max-age=300`` lets browsers and proxies do the same). The
audit chain's verification advances across those computations (see
:class:`anwang.transparency.service.ChainWatch`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Query, Response

from anwang.auth.deps import StateDep
from anwang.core.events import utcnow
from anwang.core.scope import Scope
from anwang.state import AppState
from anwang.transparency import service
from anwang.transparency.schemas import TransparencyReport

router = APIRouter(tags=["transparency"])

#: Seconds a computed report is served before it is computed again.
CACHE_SECONDS = 300
CACHE_CONTROL = f"public, max-age={CACHE_SECONDS}"
_EXTRAS_KEY = "transparency_reports"

Days = Annotated[int, Query(ge=1, le=service.MAX_DAYS, description="The period, in days.")]


@dataclass
class ReportCache:
    """The reports of one process, by ``days``, each kept for ``ttl`` seconds.

    One computation runs at a time (a burst of first requests computes once, the rest
    wait and get its result); a fresh copy is served without taking the lock."""

    ttl: float = CACHE_SECONDS
    clock: Callable[[], float] = time.monotonic
    chain: service.ChainWatch = field(default_factory=service.ChainWatch)
    _reports: dict[int, tuple[float, TransparencyReport]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _fresh(self, days: int) -> TransparencyReport | None:
        got = self._reports.get(days)
        if got is not None and self.clock() - got[0] < self.ttl:
            return got[1]
        return None

    def get(self, state: AppState, *, days: int) -> TransparencyReport:
        report = self._fresh(days)
        if report is not None:
            return report
        with self._lock:
            report = self._fresh(days)
            if report is not None:
                return report
            with state.db.unit_of_work(readonly=True, info={"scope": Scope(None)}) as session:
                report = service.build_report(session, settings=state.settings,
                                              now=utcnow(), days=days, chain=self.chain)
            now = self.clock()
            self._reports = {d: v for d, v in self._reports.items() if now - v[0] < self.ttl}
            self._reports[days] = (now, report)
            return report

    def clear(self) -> None:
        with self._lock:
            self._reports.clear()


_cache_lock = threading.Lock()


def report_cache(state: AppState) -> ReportCache:
    """The process's cache, kept on the app's state (one per app)."""
    with _cache_lock:
        cache = state.extras.get(_EXTRAS_KEY)
        if not isinstance(cache, ReportCache):
            cache = ReportCache()
            state.extras[_EXTRAS_KEY] = cache
        return cache


def current_report(state: AppState, *, days: int = service.DEFAULT_DAYS) -> TransparencyReport:
    """The report of the last ``days`` days, at most :data:`CACHE_SECONDS` old."""
    service.report_period(utcnow(), days)  # refuses a bad ``days`` before any work
    return report_cache(state).get(state, days=days)


@router.get("/transparency", response_model=TransparencyReport)
def get_transparency(
    state: StateDep,
    response: Response,
    days: Days = service.DEFAULT_DAYS,
) -> TransparencyReport:
    """The public transparency report: checkpoints, reads and their retention, the watch
    list by reason, alerts by reason and outcome, searches and exports of stored reads by
    reason, and the audit chain's head. No login; no personal data. Computed at most
    every five minutes."""
    report = current_report(state, days=days)
    response.headers["Cache-Control"] = CACHE_CONTROL
    return report
