"""Client messages -> the normalised messages providers see."""

from __future__ import annotations

from app.providers.base import ChatMessage
from app.server.protocol import ChatMessageIn, has_text

TEXT_PART_TYPES = frozenset({"text", "input_text"})


def content_text(content: object) -> str:
    """String content as is; text parts (``text``, ``input_text``) joined; other parts ignored."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:  # type: ignore[attr-defined]
        kind = getattr(part, "type", None) if not isinstance(part, dict) else part.get("type")
        text = getattr(part, "text", None) if not isinstance(part, dict) else part.get("text")
        if kind in TEXT_PART_TYPES and isinstance(text, str):
            texts.append(text)
    return "\n".join(texts)


def normalise_messages(messages: list[ChatMessageIn]) -> list[ChatMessage]:
    """Join text parts, treat ``developer`` as ``system``, keep tool-call history, drop empties."""
    out: list[ChatMessage] = []
    for m in messages:
        role = {"developer": "system", "function": "tool"}.get(m.role, m.role)
        text = content_text(m.content)
        calls = tuple(c.model_dump() for c in m.tool_calls) if m.tool_calls else None
        if not has_text(text) and not calls and role != "tool":
            continue
        out.append(ChatMessage(role=role, content=text, name=m.name, tool_calls=calls,
                               tool_call_id=m.tool_call_id))
    return out

