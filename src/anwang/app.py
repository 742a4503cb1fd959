"""``create_app(settings) -> FastAPI``: wires storage, the bus, routers and errors.

Nothing is built at import time: the CLI and the tests call :func:`create_app` with a
:class:`~anwang.settings.Settings` of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

from anwang import __version__
from anwang.alerts.handlers import start_periodic as start_alert_rounds
from anwang.checkpoints import mqtt_intake as checkpoint_reads
from anwang.checkpoints.api import admission as reads_admission
from anwang.checkpoints.handlers import start_housekeeping, stop_housekeeping
from anwang.communities import handlers as communities
from anwang.consumers import all_consumers
from anwang.core import scope
from anwang.core.bus import make_bus
from anwang.core.db import Database
from anwang.core.outbox import Outbox
from anwang.settings import Settings
from anwang.state import AppState
from anwang.web import problems
from anwang.web.admission import IngestAdmission
from anwang.web.limits import RequestGuard

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "web" / "static"


def create_app(
    settings: Settings | None = None,
    *,
    db: Database | None = None,
    run_consumers: bool | None = None,
) -> FastAPI:
    """Build the app.

    ``run_consumers``: whether this process runs the bus consumers. Default: yes on the
    in-process bus (there is no other process), no on NATS (``anwang worker`` does).
    """
    settings = settings or Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    scope.install()
    database = db or Database(settings.resolved_database_url)
    bus = make_bus(settings.bus_url, database, stream=settings.nats_stream,
                   ack_wait=settings.nats_ack_wait_s)
    if run_consumers is None:
        run_consumers = settings.bus_url == "memory://"
    state = AppState(settings=settings, db=database, bus=bus, run_consumers=run_consumers)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await bus.start(all_consumers(), run_consumers=run_consumers)
        outbox = Outbox(database, bus)
        database.publisher = outbox.publish
        relay = asyncio.create_task(outbox.relay(), name="outbox-relay")
        periodic = start_alert_rounds(database, settings) if run_consumers else None
        housekeeping = start_housekeeping(database, settings) if run_consumers else None
        devices = communities.start(database, settings) if run_consumers else None
        plate_reads = checkpoint_reads.start(database, settings) if run_consumers else None
        log.info("anwang %s started (db=%s, bus=%s)", __version__, database.dialect,
                 settings.bus_url)
        try:
            yield
        finally:
            relay.cancel()
            if periodic is not None:
                periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
            await stop_housekeeping(housekeeping)
            await communities.stop(devices)
            await checkpoint_reads.stop(plate_reads)
            database.publisher = None
            await bus.close()
            if db is None:
                database.dispose()

    app = FastAPI(
        title="anwang",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/api/v1/openapi.json",
    )
    app.state.anwang = state
    problems.install(app)
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes)
    # Added last, so outermost: sheds ingestion load before RequestGuard reads a body.
    app.add_middleware(IngestAdmission, **reads_admission(state))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    from anwang.alerts.api import router as alerts_router
    from anwang.alerts.pages import router as alerts_pages_router
    from anwang.audit.api import router as audit_router
    from anwang.auth.api import router as auth_router
    from anwang.checkpoints.api import router as checkpoints_router
    from anwang.checkpoints.pages import router as checkpoints_pages_router
    from anwang.communities.api import router as communities_router
    from anwang.communities.pages import router as communities_pages_router
    from anwang.dispatch.routers import api_router as dispatch_api_router
    from anwang.dispatch.routers import page_router as dispatch_page_router
    from anwang.roads.api import router as roads_router
    from anwang.transparency.api import router as transparency_router
    from anwang.transparency.pages import router as transparency_pages_router
    from anwang.watchlist.api import router as watchlist_router
    from anwang.watchlist.pages import router as watchlist_pages_router
    from anwang.web.map_api import router as map_router
    from anwang.web.pages import router as pages_router
    from anwang.web.stream import router as stream_router

    app.include_router(auth_router, prefix="/api/v1")
    app.include_router(audit_router, prefix="/api/v1")
    app.include_router(stream_router, prefix="/api/v1")
    app.include_router(map_router, prefix="/api/v1")
    app.include_router(checkpoints_router, prefix="/api/v1")
    app.include_router(checkpoints_pages_router)
    app.include_router(pages_router)
    app.include_router(watchlist_router, prefix="/api/v1")
    app.include_router(alerts_router, prefix="/api/v1")
    app.include_router(watchlist_pages_router)
    app.include_router(alerts_pages_router)
    app.include_router(roads_router, prefix="/api/v1")
    app.include_router(dispatch_api_router, prefix="/api/v1")
    app.include_router(dispatch_page_router)
    app.include_router(communities_router, prefix="/api/v1")
    app.include_router(communities_pages_router)
    app.include_router(transparency_router, prefix="/api/v1")
    app.include_router(transparency_pages_router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            with database.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks["database"] = f"unavailable: {exc.__class__.__name__}"
        try:
            checks["bus"] = "ok" if await bus.ready() else "unavailable"
        except Exception as exc:  # noqa: BLE001
            checks["bus"] = f"unavailable: {exc.__class__.__name__}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks},
            status_code=200 if ok else 503,
        )

    return app
