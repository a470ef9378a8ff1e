"""Profile (runtime) routes: list, show, the cookie selection, and writes (http-api.md "Profiles").

Writes only reach writable (SQLite) registries, see :mod:`webchat.runtimes.sqlite_registry`:

- ``POST /api/chat/profiles`` — body: a profile document as in the YAML format plus ``slug`` and an
  optional ``registry`` (default ``local``). 201 with the new document (version 1); 409
  ``profile_exists``; 400 ``invalid_profile`` when the YAML rules refuse it (secret-looking options too).
- ``PATCH /api/chat/profiles/{slug}[?registry=]`` — body: ``expected_version`` plus the fields to change
  (``display_name``, ``description``, ``runtime``, ``policy``) as a JSON merge patch (objects merge,
  ``null`` removes a key). 200 with the document, version + 1; 409 ``version_conflict``.
- ``DELETE /api/chat/profiles/{slug}?expected_version=N[&registry=]`` — 200 ``{registry, slug, deleted}``;
  409 ``version_conflict``.
- Without ``?registry=`` the profile is found as ``GET /api/chat/profiles/{slug}`` finds it. A write to a
  read-only (YAML or built-in) registry is 409 ``read_only_registry`` (409, not 405: the method exists,
  it is the target's state that refuses it). A rejected write changes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from webchat.runtimes.profiles import Profile, ProfileRegistry
from webchat.runtimes.resolve import (
    RuntimeResolutionError,
    cookie_value,
    lookup_profile,
    lookup_registry,
    parse_cookie_selection,
    resolve_selection,
    select_profile,
)
from webchat.runtimes.sqlite_registry import ProfileWriteError, ProfileWriter, ReadOnlyRegistry
from webchat.server.chat import COOKIE_NAME, ErrorBody
from webchat.server.deps import Services, services
from webchat.server.errors import ApiError
from webchat.server.validation import CheckedRoute

router = APIRouter(prefix="/api/chat", tags=["profiles"], route_class=CheckedRoute)
Svc = Annotated[Services, Depends(services)]


def _raise(exc: RuntimeResolutionError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


@router.get("/profiles", summary="Profiles (runtimes) on offer, by slug")
async def list_profiles(svc: Svc, registry: str | None = None) -> list[dict[str, Any]]:
    try:
        regs = [lookup_registry(svc.registries, registry)] if registry else list(svc.registries)
    except RuntimeResolutionError as exc:
        raise _raise(exc) from exc
    out = []
    for reg in regs:
        for profile in reg.sorted_profiles():
            out.append(
                {
                    "registry": reg.slug,
                    "slug": profile.slug,
                    "display_name": profile.display_name,
                    "description": profile.description,
                    "is_default": reg.slug == svc.registries.default_registry
                    and profile.slug == reg.default_profile_slug,
                    "version": profile.version,
                }
            )
    out.sort(key=lambda p: (p["slug"], p["registry"]))
    return out


@router.get("/profiles/{slug}", summary="One profile document (secrets are never part of it)")
async def get_profile(slug: str, svc: Svc, registry: str | None = None) -> dict[str, Any]:
    try:
        reg, profile = lookup_profile(svc.registries, profile=slug, registry=registry)
    except RuntimeResolutionError as exc:
        raise _raise(exc) from exc
    return profile.document(
        registry=reg.slug,
        is_default=reg.slug == svc.registries.default_registry and profile.slug == reg.default_profile_slug,
    )


@router.get("/profile", summary="The profile selected by the chat_profile cookie (else the default)")
async def current_profile(request: Request, svc: Svc) -> dict[str, str]:
    selection = select_profile(cookie=request.cookies.get(COOKIE_NAME))
    try:
        runtime = resolve_selection(svc.registries, selection)
    except RuntimeResolutionError as exc:
        raise _raise(exc) from exc
    return {"profile": runtime.profile_slug, "registry": runtime.registry_slug}


class ProfileSelection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: str = Field(min_length=1, max_length=128)
    registry: str | None = Field(None, max_length=128)


@router.post("/profile", summary="Select a profile for this browser (sets the chat_profile cookie)")
async def select(body: ProfileSelection, svc: Svc) -> JSONResponse:
    try:
        reg, profile = lookup_profile(svc.registries, profile=body.profile, registry=body.registry)
    except RuntimeResolutionError as exc:
        raise _raise(exc) from exc
    resp = JSONResponse({"profile": profile.slug, "registry": reg.slug})
    value = cookie_value(reg.slug, profile.slug)
    assert parse_cookie_selection(value) == (reg.slug, profile.slug)
    resp.set_cookie(COOKIE_NAME, value, httponly=True, samesite="lax", path="/")
    return resp


# --- writes (SQLite registries) ----------------------------------------------------------------------

WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Invalid profile, slug or request"},
    404: {"model": ErrorBody, "description": "Unknown profile or registry"},
    409: {"model": ErrorBody, "description": "profile_exists, version_conflict or read_only_registry"},
}


def _writer(request: Request) -> ProfileWriter:
    writer: ProfileWriter | None = getattr(request.app.state, "profile_store", None)
    if writer is None:
        raise ApiError(409, ReadOnlyRegistry.code, "no writable profile registry is configured")
    return writer


def _write_error(exc: ProfileWriteError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


def _document(svc: Services, reg: ProfileRegistry, profile: Profile) -> dict[str, Any]:
    return profile.document(
        registry=reg.slug,
        is_default=reg.slug == svc.registries.default_registry and profile.slug == reg.default_profile_slug,
    )


class ProfileCreate(BaseModel):
    """A profile document as in a registry YAML file, plus its ``slug`` and target ``registry``."""

    model_config = ConfigDict(extra="forbid")
    slug: str = Field(min_length=1, max_length=128)
    registry: str | None = Field(None, max_length=128, description="A writable registry (default local).")
    display_name: str | None = None
    description: str | None = None
    runtime: dict[str, Any]
    policy: dict[str, Any] | None = None
    version: int | None = Field(None, description="Ignored: versions are managed by the server.")
    is_default: bool | None = Field(None, description="Ignored.")


class ProfilePatch(BaseModel):
    """``expected_version`` plus the fields to change, as a JSON merge patch."""

    model_config = ConfigDict(extra="forbid")
    expected_version: int = Field(ge=1)
    display_name: str | None = None
    description: str | None = None
    runtime: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None


@router.post(
    "/profiles",
    status_code=201,
    summary="Create a profile in a writable (SQLite) registry",
    responses=WRITE_ERRORS,
)
async def create_profile(body: ProfileCreate, request: Request, svc: Svc) -> dict[str, Any]:
    writer = _writer(request)
    try:
        target = lookup_registry(svc.registries, body.registry).slug if body.registry else None
    except RuntimeResolutionError as exc:
        raise _raise(exc) from exc
    document = body.model_dump(exclude_unset=True, exclude={"registry"})
    try:
        registry_slug = target or writer.default_writable()
        profile = await writer.create(registry_slug, document)
        reg = writer.writable(registry_slug)
    except ProfileWriteError as exc:
        raise _write_error(exc) from exc
    return _document(svc, reg, profile)


def _writable_target(svc: Svc, writer: ProfileWriter, slug: str, registry: str | None) -> tuple[str, str]:
    try:
        reg, profile = lookup_profile(svc.registries, profile=slug, registry=registry)
    except RuntimeResolutionError as exc:
        raise _raise(exc) from exc
    try:
        writer.writable(reg.slug)
    except ProfileWriteError as exc:
        raise _write_error(exc) from exc
    return reg.slug, profile.slug


@router.patch(
    "/profiles/{slug}",
    summary="Change a profile of a writable registry (expected_version guards against lost updates)",
    responses=WRITE_ERRORS,
)
async def patch_profile(
    slug: str, body: ProfilePatch, request: Request, svc: Svc, registry: str | None = None
) -> dict[str, Any]:
    writer = _writer(request)
    registry_slug, profile_slug = _writable_target(svc, writer, slug, registry)
    changes = body.model_dump(exclude_unset=True, exclude={"expected_version"})
    try:
        profile = await writer.update(registry_slug, profile_slug, changes, body.expected_version)
        reg = writer.writable(registry_slug)
    except ProfileWriteError as exc:
        raise _write_error(exc) from exc
    return _document(svc, reg, profile)


@router.delete(
    "/profiles/{slug}",
    summary="Delete a profile of a writable registry (expected_version guards against lost updates)",
    responses=WRITE_ERRORS,
)
async def delete_profile(
    slug: str,
    request: Request,
    svc: Svc,
    expected_version: Annotated[int, Query(ge=1)],
    registry: str | None = None,
) -> dict[str, Any]:
    writer = _writer(request)
    registry_slug, profile_slug = _writable_target(svc, writer, slug, registry)
    try:
        await writer.delete(registry_slug, profile_slug, expected_version)
    except ProfileWriteError as exc:
        raise _write_error(exc) from exc
    return {"registry": registry_slug, "slug": profile_slug, "deleted": True}
