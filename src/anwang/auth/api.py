"""The identity-and-access JSON API (mounted under ``/api/v1``).

Every route needs credentials except those in :data:`PUBLIC_ROUTES`; a test walks the
app's routes and checks that every other ``/api/v1`` route answers 401 without them.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import JSONResponse

from anwang.auth import service
from anwang.auth.deps import (
    CurrentPrincipal,
    DbSession,
    LoginRateLimit,
    Principal,
    StateDep,
    client_ip,
    require,
    sign_in,
)
from anwang.auth.models import ApiKey, Jurisdiction, User
from anwang.auth.permissions import Action, Role, permissions_of
from anwang.auth.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    FeatureCollectionIn,
    JurisdictionsLoaded,
    LocaleUpdate,
    LoginRequest,
    Me,
    TokenResponse,
    UserCreate,
    UserOut,
    UserPatch,
)
from anwang.core.errors import BadRequest, PermissionDenied

router = APIRouter()

#: (method, path) of the ``/api/v1`` routes that need no credentials. Keep it short.
PUBLIC_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", "/api/v1/auth/token"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/transparency"),
    }
)

UsersManager = Annotated[Principal, Depends(require(Action.USERS_MANAGE))]
KeysManager = Annotated[Principal, Depends(require(Action.APIKEYS_MANAGE))]
MapViewer = Annotated[Principal, Depends(require(Action.MAP_VIEW))]
JurisdictionsManager = Annotated[Principal, Depends(require(Action.JURISDICTIONS_MANAGE))]


def _check_within(principal: Principal, jurisdiction: str | None) -> None:
    """An administrator acts only inside their own jurisdiction: a district admin cannot
    create a city-wide user or key, nor touch another district's."""
    if not principal.scope.contains(jurisdiction):
        raise PermissionDenied(
            f"{jurisdiction or 'the whole city'} lies outside your jurisdiction "
            f"({principal.jurisdiction or 'the whole city'}).",
            code="anwang.auth.outside_jurisdiction",
        )


def _user_out(u: User) -> UserOut:
    return UserOut(
        username=u.username, display_name=u.display_name, role=Role(u.role),
        jurisdiction=u.jurisdiction_code, locale=u.locale, active=u.active,
        totp_enabled=u.totp_enabled, locked_until=u.locked_until, created_at=u.created_at,
        last_login_at=u.last_login_at,
    )


def _key_out(k: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=k.id, name=k.name, prefix=k.prefix, role=Role(k.role),
        jurisdiction=k.jurisdiction_code, created_by=k.created_by, created_at=k.created_at,
        last_used_at=k.last_used_at, revoked_at=k.revoked_at,
    )


def _feature(j: Jurisdiction) -> dict[str, Any]:
    props: dict[str, Any] = {
        "code": j.code, "level": j.level, "parent": j.parent_code, "name": j.name,
        "name_en": j.name_en, "centroid": [j.centroid_lon, j.centroid_lat],
    }
    if j.point_lon is not None and j.point_lat is not None:
        props["station_point"] = [j.point_lon, j.point_lat]
    return {"type": "Feature", "id": j.code, "properties": props,
            "geometry": json.loads(j.geometry)}


# --- login and logout ---------------------------------------------------------------


@router.post("/auth/token", response_model=TokenResponse, tags=["auth"])
def create_token(
    body: LoginRequest, request: Request, state: StateDep, _limit: LoginRateLimit
) -> TokenResponse:
    """Exchange a username, password and (if enrolled) TOTP code for a bearer token.

    Refusals are 401 with ``code`` ``anwang.auth.invalid_credentials``,
    ``account_locked``, ``mfa_required``, ``mfa_invalid`` or ``mfa_enrolment_required``;
    more than 20 attempts a minute from one address are 429.
    """
    signed = sign_in(
        state, username=body.username, password=body.password, totp_code=body.totp_code,
        kind="api", ip=client_ip(request),
    )
    return TokenResponse(
        access_token=signed.token, expires_in=signed.expires_in,
        idle_timeout=signed.idle_timeout, role=signed.principal.role,
    )


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT, tags=["auth"])
def logout(principal: CurrentPrincipal, session: DbSession) -> Response:
    """End the session that authenticated this request; its token is refused from now on."""
    if principal.session_id is None:
        raise BadRequest("API keys are revoked, not signed out.",
                         code="anwang.auth.not_a_session")
    service.end_session(session, session_id=principal.session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- me -----------------------------------------------------------------------------


def _me(principal: Principal, locale: str | None) -> Me:
    return Me(
        kind=principal.kind, username=principal.name, role=principal.role,
        jurisdiction=principal.jurisdiction, locale=locale,
        permissions=permissions_of(principal.role),
    )


@router.get("/me", response_model=Me, tags=["auth"])
def who_am_i(principal: CurrentPrincipal) -> Me:
    return _me(principal, principal.locale)


@router.post("/me/locale", response_model=Me, tags=["auth"])
def change_locale(body: LocaleUpdate, principal: CurrentPrincipal, session: DbSession) -> Me:
    """Set the interface language of the signed-in person (cookie sessions need the
    CSRF token)."""
    if principal.kind != "user":
        raise BadRequest("API keys have no language.", code="anwang.auth.not_a_user")
    user = service.get_user(session, username=principal.name)
    service.set_locale(session, user=user, locale=body.locale)
    return _me(principal, body.locale)


# --- jurisdictions ------------------------------------------------------------------


@router.get("/jurisdictions", tags=["jurisdictions"])
def list_jurisdictions(
    principal: MapViewer,
    session: DbSession,
    level: Annotated[str | None, Query(pattern="^(city|district|station|grid)$")] = None,
) -> JSONResponse:
    """The jurisdictions inside the caller's own, as a GeoJSON FeatureCollection."""
    rows = service.list_jurisdictions(session, level=level, within=principal.scope)
    return JSONResponse(
        {"type": "FeatureCollection", "features": [_feature(j) for j in rows]},
        media_type="application/geo+json",
    )


@router.post("/jurisdictions", response_model=JurisdictionsLoaded, tags=["jurisdictions"])
def load_jurisdictions(
    body: FeatureCollectionIn, principal: JurisdictionsManager, session: DbSession
) -> JurisdictionsLoaded:
    """Insert or update the jurisdiction tree from a FeatureCollection (city-wide admins)."""
    if not principal.scope.citywide:
        raise PermissionDenied("Only a city-wide administrator loads jurisdictions.",
                               code="anwang.auth.outside_jurisdiction")
    n = service.load_jurisdictions(
        session, feature_collection=body.model_dump(), actor=principal.name,
        actor_role=principal.role,
    )
    return JurisdictionsLoaded(loaded=n)


# --- users --------------------------------------------------------------------------


@router.get("/users", response_model=list[UserOut], tags=["users"])
def list_users(principal: UsersManager, session: DbSession) -> list[UserOut]:
    return [_user_out(u) for u in service.list_users(session, within=principal.scope)]


@router.post("/users", response_model=UserOut, status_code=201, tags=["users"])
def create_user(body: UserCreate, principal: UsersManager, session: DbSession) -> UserOut:
    _check_within(principal, body.jurisdiction)
    user = service.create_user(
        session, username=body.username, password=body.password, role=body.role,
        jurisdiction_code=body.jurisdiction, display_name=body.display_name,
        locale=body.locale, actor=principal.name, actor_role=principal.role,
    )
    return _user_out(user)


@router.patch("/users/{username}", response_model=UserOut, tags=["users"])
def change_user(
    username: str, body: UserPatch, principal: UsersManager, session: DbSession
) -> UserOut:
    """Change a user's role."""
    user = service.get_user(session, username=username)
    _check_within(principal, user.jurisdiction_code)
    user = service.set_role(
        session, username=username, role=body.role, actor=principal.name,
        actor_role=principal.role,
    )
    return _user_out(user)


# --- API keys -----------------------------------------------------------------------


@router.get("/apikeys", response_model=list[ApiKeyOut], tags=["apikeys"])
def list_api_keys(principal: KeysManager, session: DbSession) -> list[ApiKeyOut]:
    return [_key_out(k) for k in service.list_api_keys(session, within=principal.scope)]


@router.post("/apikeys", response_model=ApiKeyCreated, status_code=201, tags=["apikeys"])
def create_api_key(
    body: ApiKeyCreate, principal: KeysManager, session: DbSession
) -> ApiKeyCreated:
    """Issue a key. The response holds the key this once; store it now."""
    _check_within(principal, body.jurisdiction)
    key, row = service.create_api_key(
        session, name=body.name, role=body.role, jurisdiction_code=body.jurisdiction,
        actor=principal.name, actor_role=principal.role,
    )
    return ApiKeyCreated(**_key_out(row).model_dump(), key=key)


@router.delete("/apikeys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["apikeys"])
def revoke_api_key(key_id: int, principal: KeysManager, session: DbSession) -> Response:
    row = service.get_api_key(session, key_id=key_id)
    _check_within(principal, row.jurisdiction_code)
    service.revoke_api_key(session, key_id=key_id, actor=principal.name,
                           actor_role=principal.role)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
