"""Conversations: the live registry, per-conversation FIFO queue, idempotency, and the turn runner."""
