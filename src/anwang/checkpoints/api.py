"""The JSON API of checkpoints and plate reads (mounted under ``/api/v1``).

Permissions: registering and changing checkpoints needs ``checkpoints.manage``; seeing
them and their health ``map.view``; posting reads ``reads.ingest`` (device keys);
searching and exporting stored reads ``reads.search``, with a case reference and a
reason (``docs/api.md``).

Posting reads is admission-controlled (:mod:`anwang.web.admission`): the backlog and
in-flight gates are middleware that :func:`admission` configures; the per-key rate is
checked in :func:`read_batch`.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from anwang.auth.deps import DbSession, Principal, StateDep, require
from anwang.auth.permissions import Action
from anwang.checkpoints import reads, search, service
from anwang.checkpoints.handlers import STORE_READS
from anwang.checkpoints.schemas import (
    CheckpointCreate,
    CheckpointHealth,
    CheckpointKind,
    CheckpointOut,
    CheckpointUpdate,
    HealthStatus,
    IngestOut,
    ReadOut,
    SearchOut,
)
from anwang.core import collector, outbox
from anwang.core.bus import InProcessBus
from anwang.core.errors import (
    BadRequest,
    PayloadTooLarge,
    TooManyRequests,
    UnsupportedMediaType,
    ValidationFailed,
)
from anwang.state import AppState
from anwang.web.admission import BacklogGate, TokenBuckets

router = APIRouter(tags=["checkpoints"])

Manager = Annotated[Principal, Depends(require(Action.CHECKPOINTS_MANAGE))]
Viewer = Annotated[Principal, Depends(require(Action.MAP_VIEW))]
Device = Annotated[Principal, Depends(require(Action.READS_INGEST))]
Searcher = Annotated[Principal, Depends(require(Action.READS_SEARCH))]

READ_TYPES = ("application/json", "application/x-ndjson")
READS_PATH = "/api/v1/reads"


# --- the registry ---------------------------------------------------------------------


@router.post("/checkpoints", status_code=201, response_model=CheckpointOut)
def create_checkpoint(
    body: CheckpointCreate, principal: Manager, session: DbSession
) -> CheckpointOut:
    """Register a checkpoint; its jurisdiction is found from ``lat``/``lon``."""
    cp = service.create_checkpoint(
        session, data=body, actor=principal.name, actor_role=str(principal.role)
    )
    return CheckpointOut.model_validate(cp)


@router.get("/checkpoints", response_model=list[CheckpointOut])
def list_checkpoints(
    principal: Viewer,
    session: DbSession,
    kind: CheckpointKind | None = None,
    active: bool | None = None,
    jurisdiction: Annotated[str | None, Query(max_length=40)] = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
) -> list[CheckpointOut]:
    """Checkpoints in your jurisdiction, by code."""
    return [
        CheckpointOut.model_validate(cp)
        for cp in service.list_checkpoints(
            session, kind=kind, active=active, jurisdiction=jurisdiction, q=q
        )
    ]


@router.get("/checkpoint-health", response_model=list[CheckpointHealth])
def list_health(
    principal: Viewer,
    session: DbSession,
    kind: CheckpointKind | None = None,
    status: HealthStatus | None = None,
) -> list[CheckpointHealth]:
    """Health of every checkpoint in your jurisdiction: status (``online``, ``offline``,
    ``never``, ``inactive``), last read, reads in the last hour and the last 24 hours."""
    return service.list_health(session, kind=kind, status=status)


@router.get("/checkpoints/{code}", response_model=CheckpointOut)
def get_checkpoint(code: str, principal: Viewer, session: DbSession) -> CheckpointOut:
    return CheckpointOut.model_validate(service.get_checkpoint(session, code=code))


@router.patch("/checkpoints/{code}", response_model=CheckpointOut)
def update_checkpoint(
    code: str, body: CheckpointUpdate, principal: Manager, session: DbSession
) -> CheckpointOut:
    """Change the fields given (a JSON merge patch); moving it finds its jurisdiction
    again."""
    cp = service.update_checkpoint(
        session, code=code, changes=body, actor=principal.name, actor_role=str(principal.role)
    )
    return CheckpointOut.model_validate(cp)


@router.delete("/checkpoints/{code}", response_model=CheckpointOut)
def deactivate_checkpoint(code: str, principal: Manager, session: DbSession) -> CheckpointOut:
    """Deactivate: its reads are refused from now on; what is stored stays."""
    cp = service.deactivate_checkpoint(
        session, code=code, actor=principal.name, actor_role=str(principal.role)
    )
    return CheckpointOut.model_validate(cp)


@router.get("/checkpoints/{code}/health", response_model=CheckpointHealth)
def checkpoint_health(code: str, principal: Viewer, session: DbSession) -> CheckpointHealth:
    """Status, last read, reads per hour over the last 24 hours, recent outages."""
    return service.checkpoint_health(session, code=code)


# --- ingestion --------------------------------------------------------------------------


def parse_read_batch(body: bytes, content_type: str) -> list[Any]:
    """The items of a JSON array or of NDJSON (one JSON value per non-blank line).

    A malformed JSON array is a 400, a JSON value that is not an array a 422, more than
    :data:`reads.MAX_BATCH` items a 413. In NDJSON each line stands alone: a line
    that is not JSON becomes :class:`reads.Malformed` and is rejected on its own.
    """
    limit = reads.MAX_BATCH
    too_many = PayloadTooLarge(
        f"at most {limit} reads per request; split the batch",
        code="anwang.checkpoints.batch_too_large",
    )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest.on("body", "not UTF-8", code="anwang.bad_request.encoding") from None
    if content_type == "application/x-ndjson":
        items: list[Any] = []
        for line in text.splitlines():
            if not line.strip():
                continue
            if len(items) == limit:
                raise too_many
            try:
                items.append(json.loads(line))
            except ValueError as exc:
                items.append(reads.Malformed(f"malformed JSON: {exc}"))
        return items
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise BadRequest.on("body", f"malformed JSON: {exc}",
                            code="anwang.bad_request.malformed_json") from None
    if not isinstance(doc, list):
        raise ValidationFailed.on("body", "a JSON array of reads is expected",
                                  code="anwang.checkpoints.batch_not_array")
    if len(doc) > limit:
        raise too_many
    return doc


# --- admission control ------------------------------------------------------------------


def admission(state: AppState) -> dict[str, Any]:
    """Options of :class:`~anwang.web.admission.IngestAdmission` for ``POST /reads``:
    at most ``ingest_max_in_flight`` at once, and 503 while more than
    ``ingest_max_backlog`` read events wait in the outbox or for the storage consumer."""
    settings = state.settings
    limit = settings.ingest_max_backlog

    async def backlog() -> int | None:
        unpublished = await asyncio.to_thread(outbox.pending_count, state.db, at_most=limit + 1)
        waiting = await state.bus.backlog(STORE_READS)
        return unpublished + (waiting or 0)

    return {
        "path": READS_PATH,
        "max_in_flight": settings.ingest_max_in_flight,
        "backlog": BacklogGate(limit=limit, probe=backlog) if limit > 0 else None,
    }


_buckets_lock = threading.Lock()


def _key_buckets(state: AppState) -> TokenBuckets | None:
    settings = state.settings
    if settings.ingest_key_reads_per_s <= 0:
        return None
    with _buckets_lock:
        buckets = state.extras.get("ingest_key_buckets")
        if not isinstance(buckets, TokenBuckets):
            buckets = TokenBuckets(rate=settings.ingest_key_reads_per_s,
                                   capacity=settings.ingest_key_burst_reads)
            state.extras["ingest_key_buckets"] = buckets
        return buckets


def charge_key(state: AppState, principal: Principal, reads_count: int) -> None:
    """429 ``anwang.ingest.rate_limited`` with ``Retry-After`` when the key has posted
    more than its rate (``ingest_key_reads_per_s``, burst ``ingest_key_burst_reads``)."""
    buckets = _key_buckets(state)
    if buckets is None or reads_count == 0:
        return
    wait = buckets.take(f"{principal.kind}:{principal.id}", reads_count)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(
            f"this key may post {state.settings.ingest_key_reads_per_s:g} reads a second; "
            f"retry this batch of {reads_count} in {seconds} s",
            code="anwang.ingest.rate_limited",
            headers={"Retry-After": str(seconds)},
        )


async def read_batch(request: Request, principal: Device, state: StateDep) -> list[Any]:
    """The body of ``POST /reads`` as items (after the permission check, so a caller
    without ``reads.ingest`` learns nothing about the body), charged to the key's rate
    before any transaction starts."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in READ_TYPES:
        raise UnsupportedMediaType(
            f"send reads as {' or '.join(READ_TYPES)}, not {ctype or '(none)'!r}",
            code="anwang.unsupported_media_type",
        )
    items = parse_read_batch(await request.body(), ctype)
    charge_key(state, principal, len(items))
    return items


@router.post("/reads", response_model=IngestOut)
def post_reads(
    principal: Device,
    items: Annotated[list[Any], Depends(read_batch)],
    state: StateDep,
) -> IngestOut:
    """Take in up to 10,000 plate reads (a JSON array, or NDJSON).

    Each read is validated on its own: the answer counts the reads ``accepted`` (new,
    stored shortly), the ``duplicates`` (already stored: a retried batch stores nothing
    twice) and the reads that hit the watch list (``alerts``), and lists every rejected
    read with its ``index``, a ``code`` and a ``detail``. 200 even when some or all
    reads are rejected.
    """
    # Two units of work: the checks only read, and on SQLite run outside the writer lock
    # — while the request before this one inserts and commits (its fsync) — so that
    # concurrent posts overlap; then one unit finds the new reads and stores or queues
    # them, committed before the answer.
    # The collector is paused for both (anwang.core.collector), commits included: the
    # batch's objects are gone before it runs again, so it has nothing of them to walk.
    info = {"scope": principal.scope, "principal": principal}
    retention = state.settings.read_retention_hours
    with collector.paused():
        with state.db.unit_of_work(readonly=True, info=info) as session:
            checked = reads.check_reads(session, items=items, retention_hours=retention)
        with state.db.unit_of_work(info=info) as session:
            report = reads.ingest_reads(
                session, items=items, source=f"apikey:{principal.name}",
                retention_hours=retention, checked=checked,
                store=reads.store_inline(session,
                                         in_process_bus=isinstance(state.bus, InProcessBus)),
            )
        answer = IngestOut(accepted=report.accepted, duplicates=report.duplicates,
                           rejected=report.rejected, alerts=report.alerts)
        del checked, report
    return answer


# --- search -----------------------------------------------------------------------------


def search_terms(
    case_ref: Annotated[str, Query(max_length=200)] = "",
    reason: Annotated[str, Query(max_length=100)] = "",
    plate: Annotated[str | None, Query(max_length=64)] = None,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    checkpoint: Annotated[str | None, Query(max_length=40)] = None,
    near: Annotated[str | None, Query(max_length=60, description="lat,lon")] = None,
    radius_m: Annotated[float | None, Query(gt=0)] = None,
    polygon: Annotated[str | None, Query(max_length=8000, description="lon,lat;lon,lat;...")]
    = None,
    limit: int = 1000,
) -> search.SearchTerms:
    return search.SearchTerms(
        case_ref=case_ref, reason=reason, plate=plate or None, start=start, end=end,
        checkpoint=checkpoint or None,
        near=search.parse_near(near) if near else None, radius_m=radius_m,
        polygon=search.parse_polygon(polygon) if polygon else None, limit=limit,
    )


Terms = Annotated[search.SearchTerms, Depends(search_terms)]


@router.get("/reads/search", response_model=SearchOut)
def search_reads(
    principal: Searcher, terms: Terms, session: DbSession, state: StateDep
) -> SearchOut:
    """Stored reads by plate (exact, or partial with ``?`` and ``*``), time window,
    checkpoint or area, in time order. Needs ``case_ref`` and a ``reason`` from the
    configured list; each search is one audit row with its terms and result count.
    ``coverage`` says, per checkpoint, whether it had hits, no hits, or no data (offline
    in the window)."""
    result = search.search_reads(
        session, terms=terms, reasons=state.settings.read_search_reasons,
        actor=principal.name, actor_role=str(principal.role),
        jurisdiction=principal.jurisdiction,
    )
    return SearchOut(
        count=result.count, truncated=result.truncated,
        reads=[ReadOut.model_validate(r) for r in result.reads], coverage=result.coverage,
    )


@router.get("/reads/export")
def export_reads(
    principal: Searcher,
    terms: Terms,
    session: DbSession,
    state: StateDep,
    format: Annotated[str, Query(pattern="^(csv|geojson)$")] = "csv",  # noqa: A002
) -> Response:
    """The same search as a file: ``csv`` or ``geojson`` (points, and each plate's
    route as a line). Audited like a search, as ``reads.exported``."""
    result = search.search_reads(
        session, terms=terms, reasons=state.settings.read_search_reasons,
        actor=principal.name, actor_role=str(principal.role),
        jurisdiction=principal.jurisdiction, export=format,
    )
    stamp = result.end.strftime("%Y%m%dT%H%M%SZ")
    if format == "csv":
        return Response(
            search.export_csv(result.reads), media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="reads-{stamp}.csv"'},
        )
    return Response(
        json.dumps(search.export_geojson(result.reads), ensure_ascii=False),
        media_type="application/geo+json",
        headers={"Content-Disposition": f'attachment; filename="reads-{stamp}.geojson"'},
    )
