"""``POST /chat`` and ``POST /chat/{profile}``: start or queue a prompt with a resolved runtime."""

from __future__ import annotations

import contextlib
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from webchat.conversations.service import may_use
from webchat.runtimes.resolve import (
    InvalidSlug,
    RuntimeResolutionError,
    UnknownProfile,
    UnknownRegistry,
    resolve_runtime,
    resolve_selection,
    select_profile,
)
from webchat.server.auth import request_identity
from webchat.server.deps import Services, services
from webchat.server.errors import ApiError
from webchat.server.ids import check_id
from webchat.server.validation import CheckedRoute, json_body

router = APIRouter(tags=["chat"], route_class=CheckedRoute)

LEGACY_SELECTORS = ("runtime_key", "registry_slug")
COOKIE_NAME = "chat_profile"


class ChatRequest(BaseModel):
    """A prompt for a conversation. Unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="The user's prompt (non-blank).")
    conv_id: str | None = Field(None, description="Conversation id; absent starts a new conversation.")
    profile: str | None = Field(None, description="Profile slug (runtime) for this prompt.")
    registry: str | None = Field(None, description="Registry slug of the profile.")
    request_overrides: dict[str, Any] | None = Field(
        None, description="Per-request overrides, if the profile allows."
    )
    idempotency_key: str | None = Field(
        None, description="Replaying a known key returns the stored response."
    )


class ChatStarted(BaseModel):
    status: str = "started"
    conv_id: str
    session_id: str
    turn_id: str
    inference_id: str
    runtime_key: str
    runtime_fingerprint: str
    idempotency_key: str


class ChatQueued(BaseModel):
    status: str = "queued"
    queue_position: int
    queue_depth: int
    conv_id: str
    session_id: str
    turn_id: str
    runtime_key: str
    idempotency_key: str


class ErrorBody(BaseModel):
    error: str
    code: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorBody,
        "description": "Bad input (blank prompt, invalid slug, malformed JSON, legacy selector, "
        "invalid_host)",
    },
    401: {"model": ErrorBody, "description": "unauthorized / invalid_token (team mode)"},
    404: {
        "model": ErrorBody,
        "description": "Unknown profile or registry; unknown_conversation (also another user's)",
    },
    409: {
        "model": ErrorBody,
        "description": "idempotency_key_reused: the key names a prompt of another conversation or text",
    },
    403: {"model": ErrorBody, "description": "invalid_origin: a foreign Origin header"},
    413: {"model": ErrorBody, "description": "Prompt or body over the configured limit"},
    415: {"model": ErrorBody, "description": "unsupported_media_type: the body is not application/json"},
    429: {
        "model": ErrorBody,
        "description": "queue_full: the conversation has --max-queue prompts waiting; "
        "too_many_conversations: the user has --max-conversations-per-user open; "
        "too_many_prompts: the user has --max-prompts-per-user prompts waiting or running",
    },
    503: {"model": ErrorBody, "description": "shutting_down: the server accepts no new prompt"},
}


async def _parse(request: Request, max_prompt_chars: int) -> ChatRequest:
    doc = await json_body(request)
    if not isinstance(doc, dict):
        raise ApiError(400, "invalid_request", "request body must be a JSON object")
    for key in LEGACY_SELECTORS:
        if key in doc or key in request.query_params:
            raise ApiError(400, "unsupported_legacy_selector", f"unsupported legacy selector: {key}")
    try:
        body = ChatRequest.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(400, "invalid_request", f"{where}: {first['msg']}") from exc
    if not body.prompt.strip():
        raise ApiError(400, "blank_prompt", "prompt must not be blank")
    if len(body.prompt) > max_prompt_chars:
        raise ApiError(413, "prompt_too_large", f"prompt is longer than {max_prompt_chars} characters")
    return body


async def _chat(
    request: Request, svc: Services, path_profile: str | None, header_key: str | None
) -> JSONResponse:
    identity = request_identity(request)
    body = await _parse(request, svc.settings.max_prompt_chars)
    conv_id = check_id(body.conv_id, "conv_id") if body.conv_id is not None else None
    if conv_id is not None and not identity.is_admin:
        # Before anything reads the conversation (its pointer): another user's conversation answers
        # exactly as an unknown one, whatever else is wrong with the request. A new one is claimed.
        owner = await svc.conversations.owner_of(conv_id)
        if owner is not None and not may_use(owner, identity.user_id, admin=False):
            raise ApiError(404, "unknown_conversation", f"no conversation {conv_id}")
    # Precedence: path > body > query > cookie > registry default (http-api.md).
    selection = select_profile(
        path_profile=path_profile,
        body_profile=body.profile,
        query_profile=request.query_params.get("profile"),
        cookie=request.cookies.get(COOKIE_NAME),
        registry=body.registry or request.query_params.get("registry"),
    )
    runtime = None
    try:
        if selection.source == "default" and conv_id is not None:
            # Nothing selected: the conversation keeps the runtime its pointer names (if it still exists).
            # Request overrides the pointer's profile refuses are the request's error, as for a selection.
            pointer = await svc.conversations.pointer(conv_id)
            if pointer:
                with contextlib.suppress(UnknownProfile, UnknownRegistry, InvalidSlug):
                    runtime = resolve_runtime(
                        svc.registries, profile=pointer, overrides=body.request_overrides
                    )
        if runtime is None:
            runtime = resolve_selection(svc.registries, selection, body.request_overrides)
    except RuntimeResolutionError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from exc
    key = body.idempotency_key or header_key or str(uuid.uuid4())
    if not key.strip() or len(key) > 200:
        raise ApiError(400, "invalid_idempotency_key", "idempotency key must be 1-200 characters")
    status, payload = await svc.conversations.submit(
        conv_id, body.prompt, runtime, key, user_id=identity.user_id, admin=identity.is_admin
    )
    return JSONResponse(payload, status_code=status)


_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": ChatRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            }
        },
    }
}


@router.post(
    "/chat",
    responses={200: {"model": ChatStarted}, 202: {"model": ChatQueued}, **ERRORS},
    openapi_extra=_BODY_DOC,
    summary="Send a prompt (runtime from body, query, cookie or default)",
)
async def chat(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    return await _chat(request, svc, None, idempotency_key)


@router.post(
    "/chat/{profile}",
    responses={200: {"model": ChatStarted}, 202: {"model": ChatQueued}, **ERRORS},
    openapi_extra=_BODY_DOC,
    summary="Send a prompt with the profile given in the path",
)
async def chat_with_profile(
    profile: str,
    request: Request,
    svc: Annotated[Services, Depends(services)],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    return await _chat(request, svc, profile, idempotency_key)
