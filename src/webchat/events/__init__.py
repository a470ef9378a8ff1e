"""Stream events: the envelope, the per-conversation hub (sequencing, fan-out, ring buffer), the projector."""

from webchat.events.envelope import Event, encode, now_ms
from webchat.events.hub import ConversationHub, HubRegistry, Subscription, SubscriptionClosed
from webchat.events.projector import project

__all__ = [
    "ConversationHub",
    "Event",
    "HubRegistry",
    "Subscription",
    "SubscriptionClosed",
    "encode",
    "now_ms",
    "project",
]
