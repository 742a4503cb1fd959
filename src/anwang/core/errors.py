"""The one error tree of anwang.

Services raise these; the web edge maps them to RFC 9457 ``application/problem+json`` in
one place (:mod:`anwang.web.problems`). Services never raise HTTP exceptions.

::

    AnwangError                      500  anwang.error
    ├── ValidationFailed             422  anwang.validation_failed
    │   └── BadRequest               400  anwang.bad_request
    ├── NotAuthenticated             401  anwang.auth.not_authenticated
    ├── PermissionDenied             403  anwang.auth.permission_denied
    ├── NotFound                     404  anwang.not_found
    ├── Conflict                     409  anwang.conflict
    ├── PayloadTooLarge              413  anwang.payload_too_large
    ├── UnsupportedMediaType         415  anwang.unsupported_media_type
    ├── TooManyRequests              429  anwang.too_many_requests
    └── Unavailable                  503  anwang.unavailable  ("not ready, retry later")

Each error carries a stable dotted ``code`` (subclasses or call sites may refine it, e.g.
``anwang.auth.account_locked``), a human ``detail`` and, for validation errors, a list of
``errors`` each naming the ``field`` and the ``reason``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    field: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


class AnwangError(Exception):
    status: int = 500
    code: str = "anwang.error"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str = "",
        *,
        code: str | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if code is not None:
            self.code = code
        self.errors: list[FieldError] = list(errors or [])
        self.headers: dict[str, str] = dict(headers or {})


class ValidationFailed(AnwangError):
    status = 422
    code = "anwang.validation_failed"
    title = "The request is not valid"

    @classmethod
    def on(cls, field_name: str, reason: str, *, code: str | None = None) -> ValidationFailed:
        return cls(f"{field_name}: {reason}", code=code, errors=[FieldError(field_name, reason)])


class BadRequest(ValidationFailed):
    status = 400
    code = "anwang.bad_request"
    title = "The request could not be read"


class NotAuthenticated(AnwangError):
    status = 401
    code = "anwang.auth.not_authenticated"
    title = "Authentication required"


class PermissionDenied(AnwangError):
    status = 403
    code = "anwang.auth.permission_denied"
    title = "Not allowed"


class NotFound(AnwangError):
    status = 404
    code = "anwang.not_found"
    title = "Not found"


class Conflict(AnwangError):
    status = 409
    code = "anwang.conflict"
    title = "Conflict with the current state"


class PayloadTooLarge(AnwangError):
    status = 413
    code = "anwang.payload_too_large"
    title = "Request body too large"


class UnsupportedMediaType(AnwangError):
    status = 415
    code = "anwang.unsupported_media_type"
    title = "Unsupported content type"


class TooManyRequests(AnwangError):
    status = 429
    code = "anwang.too_many_requests"
    title = "Too many requests"


class Unavailable(AnwangError):
    status = 503
    code = "anwang.unavailable"
    title = "Not ready, retry later"


__all__ = [
    "AnwangError",
    "BadRequest",
    "Conflict",
    "FieldError",
    "NotAuthenticated",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "TooManyRequests",
    "Unavailable",
    "UnsupportedMediaType",
    "ValidationFailed",
]

