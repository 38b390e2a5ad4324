"""Choosing what Hydra sees of the client's messages."""

from __future__ import annotations

from dataclasses import dataclass

from app.hydra.events import HydraRequestError
from app.providers.base import ChatMessage

SYSTEM_ROLES = ("system", "developer")


@dataclass(frozen=True)
class Conversation:
    """Client system texts, the last N earlier messages, and the latest user message."""

    system: tuple[str, ...]
    history: tuple[ChatMessage, ...]
    latest: ChatMessage

    @property
    def client_context(self) -> str:
        return "\n\n".join(s for s in self.system if s.strip())


def split_messages(messages: list[ChatMessage], keep: int) -> Conversation:
    """Latest user message; up to ``keep`` user/assistant messages before it; system texts.

    Messages after the latest user message are ignored.  Tool messages and tool-call-only
    assistant turns are left out of the history (Hydra speaks plain text to every model).
    """
    last = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None)
    if last is None:
        raise HydraRequestError("Hydra needs at least one user message", param="messages")
    before = messages[:last]
    system = tuple(m.content for m in before if m.role in SYSTEM_ROLES)
    talk = [ChatMessage(role=m.role, content=m.content) for m in before
            if m.role in ("user", "assistant") and m.content.strip()]
    history = tuple(talk[-keep:]) if keep > 0 else ()
    latest = messages[last]
    return Conversation(system, history, ChatMessage(role="user", content=latest.content))
