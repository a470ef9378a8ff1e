"""Profile (runtime) routes: list, show, and the cookie selection (http-api.md "Profiles")."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from webchat.runtimes.resolve import (
    RuntimeResolutionError,
    cookie_value,
    lookup_profile,
    lookup_registry,
    parse_cookie_selection,
    resolve_selection,
    select_profile,
)
from webchat.server.chat import COOKIE_NAME
from webchat.server.deps import Services, services
from webchat.server.errors import ApiError

router = APIRouter(prefix="/api/chat", tags=["profiles"])
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
