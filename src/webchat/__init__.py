"""web-chat: a self-hostable LLM chat server with per-turn runtime truth."""

__version__ = "0.1.0"
