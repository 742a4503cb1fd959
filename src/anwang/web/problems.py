"""RFC 9457 problem details: the one place where errors become HTTP responses.

Every error a client sees is ``application/problem+json`` with ``type``, ``title``,
``status``, ``detail``, ``code`` (the stable dotted name from :mod:`anwang.core.errors`)
and, for invalid input, ``errors: [{"field", "reason"}]``. Unexpected exceptions are
logged with their trace and answered with a bare 500: no stack trace reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from anwang.core.errors import AnwangError, FieldError, NotAuthenticated

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://anwang.invalid/problems/"
_HTTP_CODES = {
    400: "anwang.bad_request",
    401: "anwang.auth.not_authenticated",
    403: "anwang.auth.permission_denied",
    404: "anwang.not_found",
    405: "anwang.method_not_allowed",
    409: "anwang.conflict",
    413: "anwang.payload_too_large",
    415: "anwang.unsupported_media_type",
    422: "anwang.validation_failed",
    429: "anwang.too_many_requests",
}


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = [e.as_dict() for e in errors]
    return JSONResponse(
        body, status_code=status, headers=headers, media_type="application/problem+json"
    )


def _wants_html(request: Request) -> bool:
    if request.url.path.startswith("/api/") or request.url.path.startswith("/healthz"):
        return False
    return "text/html" in request.headers.get("accept", "")


def _loc_to_field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or str(loc[0] if loc else "body")


def _validation_errors(exc: RequestValidationError) -> tuple[int, str, list[FieldError]]:
    errors: list[FieldError] = []
    status, code = 422, "anwang.validation_failed"
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            status, code = 400, "anwang.bad_request.malformed_json"
            ctx = err.get("ctx") or {}
            errors.append(FieldError("body", f"malformed JSON: {ctx.get('error', 'invalid')}"))
            continue
        errors.append(FieldError(_loc_to_field(err.get("loc", ())), str(err.get("msg", ""))))
    return status, code, errors


def _html_error(request: Request, status: int, code: str) -> Response:
    """A page, not JSON, for a person's browser (403 and 404 outside the API)."""
    from anwang.web.pages import html_error  # the pages import this module's app wiring

    return html_error(request, status, code=code)


def install(app: FastAPI) -> None:
    @app.exception_handler(AnwangError)
    async def _anwang(request: Request, exc: AnwangError) -> Response:
        if isinstance(exc, NotAuthenticated) and _wants_html(request):
            nxt = request.url.path
            return RedirectResponse(f"/login?next={nxt}", status_code=303)
        if exc.status >= 500:
            log.error("%s on %s: %s", exc.code, request.url.path, exc.detail)
        if exc.status in (403, 404) and _wants_html(request):
            return _html_error(request, exc.status, exc.code)
        return problem(
            exc.status, exc.code, exc.title, exc.detail,
            errors=exc.errors, headers=exc.headers, instance=request.url.path,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        status, code, errors = _validation_errors(exc)
        detail = "; ".join(f"{e.field}: {e.reason}" for e in errors) or "invalid request"
        title = "The request could not be read" if status == 400 else "The request is not valid"
        return problem(status, code, title, detail, errors=errors, instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, f"anwang.http_{exc.status_code}")
        if exc.status_code in (403, 404) and _wants_html(request):
            return _html_error(request, exc.status_code, code)
        detail = str(exc.detail) if exc.detail else ""
        return problem(
            exc.status_code, code, detail or "Error", detail or "Error",
            headers=dict(exc.headers or {}), instance=request.url.path,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            500, "anwang.internal_error", "Internal error",
            "An unexpected error occurred; it has been logged.", instance=request.url.path,
        )
