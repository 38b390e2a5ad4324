"""Anthropic Messages request -> the provider :class:`~app.providers.base.ChatRequest`.

- ``system`` (a string or text blocks) becomes one system message, without Claude Code's
  per-request ``x-anthropic-billing-header:`` line (it changes on every request and would wipe
  the prompt-prefix cache at the very first token).
- A user turn's ``tool_result`` blocks become ``tool`` messages (in order, before the turn's
  text); an assistant turn's ``tool_use`` blocks become OpenAI-style ``tool_calls`` (the
  ``input`` object as JSON arguments), so every chat template renders them as it renders chat
  tool history.  ``thinking`` blocks are accepted and left out of the prompt (chat templates drop
  earlier turns' reasoning); other block types (images, documents) are left out as the chat
  endpoint leaves out non-text parts.
- ``tools`` with an ``input_schema`` become function tools; ``tool_choice`` maps ``auto`` /
  ``any`` / ``tool`` / ``none`` to ``auto`` / ``required`` / the named function / ``none``.
- ``output_config.format`` (a JSON schema) becomes the chat ``response_format``; ``thinking``
  (``disabled``) and ``output_config.effort`` become ``reasoning_effort``; ``thinking.budget_tokens``
  (``enabled``) becomes ``thinking_budget``.
- Claude Code asks for its own model names (``claude-…``): :func:`translate_model` maps them to a
  configured model before routing (``messages_models`` in the settings).
"""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

from app.providers.base import ChatMessage, ChatRequest
from app.server.errors import ApiError
from app.server.protocol import has_text
from app.server.protocol_messages import (
    CountTokensRequest,
    MessageParam,
    MessagesRequest,
    SystemBlock,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from app.settings import Settings

BILLING_HEADER = re.compile(r"^x-anthropic-billing-header:[^\n]*(?:\n|$)", re.MULTILINE)
"""Claude Code's attribution line (``cc_version=…; cc_entrypoint=…; cch=…;``), new every request."""

CLAUDE_TIERS = ("opus", "sonnet", "haiku")


def system_text(system: str | list[SystemBlock] | None) -> str:
    """The system prompt as one text (blocks joined by a blank line), billing line removed."""
    if system is None:
        return ""
    parts = [system] if isinstance(system, str) else [b.text for b in system]
    kept = [BILLING_HEADER.sub("", p) for p in parts]
    return "\n\n".join(p for p in kept if has_text(p))


def block_text(content: str | list[Any] | None) -> str:
    """A string as is, else the text blocks of ``content`` joined by newlines."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(b.text for b in content if isinstance(b, TextBlock))


def _tool_call(block: ToolUseBlock) -> dict[str, Any]:
    return {"id": block.id, "type": "function",
            "function": {"name": block.name, "arguments": json.dumps(block.input, ensure_ascii=False)}}


def _turn_messages(turn: MessageParam) -> list[ChatMessage]:
    blocks = [TextBlock(text=turn.content)] if isinstance(turn.content, str) else turn.content
    if turn.role == "system":
        text = block_text(blocks)
        reminder = f"<system-reminder>\n{text}\n</system-reminder>"
        return [ChatMessage("user", reminder)] if has_text(text) else []
    if turn.role == "assistant":
        text = block_text(blocks)
        calls = tuple(_tool_call(b) for b in blocks if isinstance(b, ToolUseBlock))
        if not has_text(text) and not calls:
            return []
        return [ChatMessage("assistant", text, tool_calls=calls or None)]
    out: list[ChatMessage] = []
    for b in blocks:
        if isinstance(b, ToolResultBlock):
            result = block_text(b.content)
            out.append(ChatMessage("tool", f"Error: {result}" if b.is_error else result,
                                   tool_call_id=b.tool_use_id))
    text = block_text(blocks)
    if has_text(text):
        out.append(ChatMessage("user", text))
    return out


def chat_messages(data: CountTokensRequest) -> list[ChatMessage]:
    """The normalised conversation: system first, then each turn's messages.

    A ``system`` turn inside the conversation becomes user text in ``<system-reminder>`` tags
    (many chat templates refuse a system message after the first), and adjacent user texts are
    joined into one message (templates that insist on alternating roles accept the result)."""
    system = system_text(data.system)
    out = [ChatMessage("system", system)] if system else []
    for turn in data.messages:
        for message in _turn_messages(turn):
            if message.role == "user" and out and out[-1].role == "user":
                out[-1] = ChatMessage("user", out[-1].content + "\n\n" + message.content)
            else:
                out.append(message)
    if not any(m.role != "system" for m in out):
        raise ApiError(400, "messages: every message is empty; send at least one with text content.",
                       code="invalid_value", param="messages")
    return out


def chat_tools(data: CountTokensRequest) -> list[dict[str, Any]] | None:
    """Client tools as OpenAI function tools; server tools (no ``input_schema``) are left out."""
    tools = [{"type": "function", "function": _function(t.name, t.description, t.input_schema)}
             for t in data.tools or [] if t.input_schema is not None]
    return tools or None


def _function(name: str, description: str | None, schema: dict[str, Any] | None) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": name}
    if description:
        fn["description"] = description
    fn["parameters"] = schema
    return fn


def chat_tool_choice(data: CountTokensRequest, tools: list[dict[str, Any]] | None
                     ) -> tuple[str | dict[str, Any] | None, bool | None]:
    """``tool_choice`` and ``parallel_tool_calls`` for the provider request."""
    choice = data.tool_choice
    if choice is None or (not tools and choice.type in ("auto", "none")):
        return None, None
    parallel = None if choice.disable_parallel_tool_use is None else not choice.disable_parallel_tool_use
    if choice.type == "tool":
        if not choice.name:
            raise ApiError(400, "tool_choice.name: required when tool_choice.type is 'tool'.",
                           code="missing_required_parameter", param="tool_choice.name")
        return {"type": "function", "function": {"name": choice.name}}, parallel
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type], parallel


def chat_request(data: MessagesRequest) -> ChatRequest:
    """The provider request for a Messages body (``top_k`` goes to runtimes that take it)."""
    tools = chat_tools(data)
    choice, parallel = chat_tool_choice(data, tools)
    return ChatRequest(
        messages=chat_messages(data),
        temperature=1.0 if data.temperature is None else data.temperature,
        top_p=1.0 if data.top_p is None else data.top_p,
        max_tokens=data.max_tokens,
        stop=list(data.stop_sequences or []),
        user=data.metadata.user_id if data.metadata else None,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=parallel,
        response_format=response_format(data),
        reasoning_effort=reasoning_effort(data),
        thinking_budget=data.thinking.budget_tokens if data.thinking and data.thinking.type == "enabled"
        else None,
        extra={"top_k": data.top_k} if data.top_k is not None else {},
    )


EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "xhigh"}


def reasoning_effort(data: CountTokensRequest) -> str | None:
    """``thinking: disabled`` -> ``none``; else ``output_config.effort`` (``max`` -> ``xhigh``);
    the template's own reasoning switches take it (``app.providers.reasoning``)."""
    if data.thinking is not None and data.thinking.type == "disabled":
        return "none"
    effort = data.output_config.effort if data.output_config else None
    return EFFORTS.get(effort or "")


def response_format(data: MessagesRequest) -> dict[str, Any] | None:
    """``output_config.format`` as the chat ``response_format`` (json_schema)."""
    fmt = data.output_config.format if data.output_config else None
    if fmt is None:
        return None
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt.schema_}}


def translate_model(requested: str, settings: Settings) -> str | None:
    """The model name to route: a configured id or alias passes through; a ``claude-…`` name goes
    to the first ``messages_models`` entry whose key is its tier (``opus``/``sonnet``/``haiku``) or
    a shell pattern it matches; otherwise (or for an empty target) None: the active model."""
    name = requested.strip()
    if settings.row(name) is not None:
        return name
    key = name.lower()
    for pattern, target in settings.messages_models.items():
        p = pattern.strip().lower()
        hit = (p in key and key.startswith("claude")) if p in CLAUDE_TIERS else fnmatch.fnmatchcase(key, p)
        if hit:
            return target.strip() or None
    if key.startswith("claude"):
        return None
    return name
