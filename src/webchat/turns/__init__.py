"""Turns and blocks: the unit of conversation web-chat records, with its serde and hashing."""

from webchat.turns.hashing import HASH_ALGORITHM, block_content_hash, canonical_json
from webchat.turns.model import Block, Turn

__all__ = ["HASH_ALGORITHM", "Block", "Turn", "block_content_hash", "canonical_json"]
