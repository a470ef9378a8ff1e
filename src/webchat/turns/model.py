"""The Turn and Block types.

A turn is one prompt and everything produced for it; a phase snapshot of a turn holds its full block
list (system prompt, the history sent to the model, the prompt, and what came back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from webchat.turns.hashing import block_content_hash

# Block kinds used by web-chat and the reference implementation. Unknown kinds are kept as written.
BLOCK_KINDS = ("system", "user", "llm_text", "tool_call", "tool_use", "reasoning", "other")


@dataclass
class Block:
    kind: str
    role: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def content_hash(self) -> str:
        return block_content_hash(self.kind, self.role, self.payload, self.metadata)

    @property
    def text(self) -> str:
        value = self.payload.get("text")
        return value if isinstance(value, str) else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "role": self.role,
            "payload": self.payload,
            "metadata": self.metadata,
        }


@dataclass
class Turn:
    id: str
    blocks: list[Block] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "blocks": [b.to_dict() for b in self.blocks],
            "metadata": self.metadata,
            "data": self.data,
        }

    def copy(self) -> Turn:
        """A copy whose block list and metadata can be changed without touching this turn."""
        return Turn(
            id=self.id,
            blocks=[
                Block(kind=b.kind, role=b.role, payload=dict(b.payload), metadata=dict(b.metadata), id=b.id)
                for b in self.blocks
            ],
            metadata=dict(self.metadata),
            data=dict(self.data),
        )
