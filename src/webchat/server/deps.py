"""What the routers share, built once by the app factory and passed in (no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request, WebSocket

from webchat.conversations.service import ConversationService
from webchat.runtimes.profiles import Registries
from webchat.server.settings import Settings
from webchat.stores.protocol import TurnStore
from webchat.stores.timeline import TimelineStore


@dataclass
class Services:
    settings: Settings
    turns: TurnStore
    timeline: TimelineStore
    registries: Registries
    conversations: ConversationService
    # Open WebSockets per user id ('' in local mode): bounded by --max-sockets-per-user.
    sockets: dict[str, int] = field(default_factory=dict)


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def ws_services(websocket: WebSocket) -> Services:
    svc: Services = websocket.app.state.services
    return svc
