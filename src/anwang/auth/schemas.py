"""Request and response shapes of the identity-and-access API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from anwang.auth.permissions import Action, Role

Locale = Literal["zh_CN", "en"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(_In):
    # No pattern on the username: a malformed name must fail like any wrong name.
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)
    totp_code: str | None = Field(default=None, max_length=16)


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    #: Seconds until the token expires at the latest.
    expires_in: int
    #: Seconds of inactivity after which it expires earlier.
    idle_timeout: int
    role: Role


class Me(BaseModel):
    kind: Literal["user", "apikey"]
    username: str
    role: Role
    jurisdiction: str | None
    locale: str | None
    permissions: list[Action]


class LocaleUpdate(_In):
    locale: Locale


class UserOut(BaseModel):
    username: str
    display_name: str | None
    role: Role
    jurisdiction: str | None
    locale: str | None
    active: bool
    totp_enabled: bool
    locked_until: datetime | None
    created_at: datetime
    last_login_at: datetime | None


class UserCreate(_In):
    username: str = Field(min_length=3, max_length=64)
    password: str = Field(max_length=1024)
    role: Role
    jurisdiction: str | None = Field(default=None, max_length=40)
    display_name: str | None = Field(default=None, max_length=120)
    locale: Locale | None = None


class UserPatch(_In):
    role: Role


class ApiKeyCreate(_In):
    name: str = Field(min_length=1, max_length=100)
    role: Role
    jurisdiction: str | None = Field(default=None, max_length=40)


class ApiKeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    role: Role
    jurisdiction: str | None
    created_by: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    #: The key itself. Shown this once; only its hash is kept.
    key: str


class FeatureCollectionIn(BaseModel):
    """A GeoJSON FeatureCollection of jurisdictions; the features are checked in depth
    by :func:`anwang.auth.service.load_jurisdictions`, which names the failing index."""

    type: Literal["FeatureCollection"]
    features: list[dict[str, Any]] = Field(min_length=1)


class JurisdictionsLoaded(BaseModel):
    loaded: int
