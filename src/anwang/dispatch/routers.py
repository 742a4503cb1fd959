"""The routers of dispatch and response circles, gathered for :func:`anwang.app.create_app`:
``api_router`` (mounted under ``/api/v1``) and ``page_router`` (the pages)."""

from __future__ import annotations

from fastapi import APIRouter

from anwang.dispatch import api, coverage_api, pages

api_router = APIRouter()
api_router.include_router(api.router)
api_router.include_router(coverage_api.router)

page_router = pages.router

__all__ = ["api_router", "page_router"]
