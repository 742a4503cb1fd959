"""Request guards at the HTTP edge: body size and content type (load shedding of
ingestion is in :mod:`anwang.web.admission`).

Pure ASGI middleware, so an oversized body is refused while it streams in, before any
route (and so before any write) runs. Limits are documented in docs/api.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Content types accepted on API requests that carry a body.
API_CONTENT_TYPES = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/merge-patch+json",
        "text/csv",
        "multipart/form-data",
        "application/x-www-form-urlencoded",
    }
)


def _problem(status: int, code: str, title: str, detail: str) -> bytes:
    return json.dumps(
        {
            "type": f"https://anwang.invalid/problems/{code}",
            "title": title,
            "status": status,
            "detail": detail,
            "code": code,
        }
    ).encode()


async def send_problem(
    send: Send,
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Answer with a problem+json from ASGI middleware (before any route runs)."""
    body = _problem(status, code, title, detail)
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        content_types: Iterable[str] = API_CONTENT_TYPES,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.content_types = frozenset(content_types)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        limit = self.max_body_bytes
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await send_problem(
                send, 413, "anwang.payload_too_large", "Request body too large",
                f"the body is {length} bytes; the limit is {limit} bytes",
            )
            return
        method = scope["method"]
        path: str = scope["path"]
        has_body = (length not in (None, "0")) or "transfer-encoding" in headers
        if path.startswith("/api/") and method in ("POST", "PUT", "PATCH") and has_body:
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype not in self.content_types:
                await send_problem(
                    send, 415, "anwang.unsupported_media_type", "Unsupported content type",
                    f"content type {ctype or '(none)'!r} is not accepted here; "
                    "send application/json",
                )
                return

        if not has_body:
            await self.app(scope, receive, send)
            return
        # Read the whole body here, counting, before any route runs: a body that turns
        # out larger than announced (or that announced nothing) is refused with 413
        # before a single byte reaches a handler. Routes then read it from memory.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            received += len(body)
            if received > limit:
                await send_problem(
                    send, 413, "anwang.payload_too_large", "Request body too large",
                    f"the body exceeds the limit of {limit} bytes",
                )
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
