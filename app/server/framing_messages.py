"""Anthropic Messages framing: the ``message`` object and the named SSE events of a streamed turn.

A stream is ``message_start``, ``ping``, then per content block (``thinking``, ``text``,
``tool_use``) a ``content_block_start``, its ``content_block_delta`` events (``thinking_delta``,
``text_delta``, ``input_json_delta``) and a ``content_block_stop``; then ``message_delta``
(stop reason, usage) and ``message_stop``.  A failure after the first byte is an ``error`` event.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from app.providers.base import ChatChunk, ChatResult, Usage
from app.server.errors import ApiError
from app.server.serving import TurnItem
from app.server.streaming import StreamTotals, chunks_and_notes

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "function_call": "tool_use", "content_filter": "refusal"}
"""Provider ``finish_reason`` -> Anthropic ``stop_reason``."""


def named_event(kind: str, payload: dict[str, Any]) -> bytes:
    """``event: <kind>`` + one ``data:`` line, as Anthropic's streams are framed."""
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return f"event: {kind}\ndata: {data}\n\n".encode()


def error_event(err: ApiError) -> bytes:
    """A failure after the stream started: Anthropic's ``error`` event."""
    return named_event("error", err.anthropic_body())


def tool_use_id(call_id: str | None) -> str:
    """A ``toolu_`` id for a provider's tool call id."""
    if call_id and call_id.startswith("toolu_"):
        return call_id
    return "toolu_" + (call_id.removeprefix("call_") if call_id else uuid.uuid4().hex[:24])


def tool_input(arguments: str) -> dict[str, Any]:
    """A call's JSON arguments as the ``input`` object (``{}`` when they are not an object)."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def usage_body(usage: Usage) -> dict[str, int]:
    """Anthropic usage: prompt tokens the model's prefix cache held are ``cache_read_input_tokens``,
    the rest ``input_tokens`` (their sum is the prompt, as Anthropic counts); nothing is written
    to a cache on request, so ``cache_creation_input_tokens`` is 0."""
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    return {"input_tokens": usage.prompt_tokens - cached, "output_tokens": usage.completion_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached}


class MessageReply:
    """Builds Anthropic ``message`` objects and stream events for one request; ``stop_sequences``
    are the request's (a reply one of them ended reports ``stop_reason: "stop_sequence"``)."""

    def __init__(self, model: str, stop_sequences: list[str] | None = None) -> None:
        self.id = "msg_" + uuid.uuid4().hex[:24]
        self.model = model
        self.stop_sequences = list(stop_sequences or [])

    def stop(self, finish: str, matched: str | None) -> dict[str, str | None]:
        """``stop_reason`` and ``stop_sequence`` for a provider finish and the stop string that
        ended the reply (only the request's own ones count: a chat format's end marker is
        ``end_turn``)."""
        if finish == "stop" and matched is not None and matched in self.stop_sequences:
            return {"stop_reason": "stop_sequence", "stop_sequence": matched}
        return {"stop_reason": STOP_REASONS.get(finish, "end_turn"), "stop_sequence": None}

    def message(self, result: ChatResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The whole reply (``type: message``)."""
        content: list[dict[str, Any]] = []
        if result.reasoning:
            content.append({"type": "thinking", "thinking": result.reasoning, "signature": ""})
        if result.text or not result.tool_calls:
            content.append({"type": "text", "text": result.text})
        for call in result.tool_calls or []:
            fn = call.get("function") or {}
            content.append({"type": "tool_use", "id": tool_use_id(call.get("id")),
                            "name": fn.get("name", ""), "input": tool_input(fn.get("arguments", ""))})
        body = self.shell(content, usage_body(result.usage),
                          **self.stop(result.finish_reason, result.stop_sequence))
        if extra:
            body.update(extra)
        return body

    def shell(self, content: list[dict[str, Any]], usage: dict[str, int],
              stop_reason: str | None = None, stop_sequence: str | None = None) -> dict[str, Any]:
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": content, "stop_reason": stop_reason, "stop_sequence": stop_sequence,
                "usage": usage}


class _Blocks:
    """The open content block of a stream, and the events that open, feed and close blocks."""

    def __init__(self) -> None:
        self.index = -1
        self.kind: str | None = None  # "thinking" | "text" | "tool:<provider index>"
        self.tool_ids: dict[int, str] = {}

    def close(self) -> list[bytes]:
        if self.kind is None:
            return []
        self.kind = None
        return [named_event("content_block_stop", {"type": "content_block_stop", "index": self.index})]

    def open(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        out = self.close()
        self.index += 1
        self.kind = kind
        out.append(named_event("content_block_start", {"type": "content_block_start",
                                                       "index": self.index, "content_block": block}))
        return out

    def delta(self, delta: dict[str, Any]) -> bytes:
        return named_event("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                                   "delta": delta})

    def feed(self, chunk: ChatChunk) -> list[bytes]:
        out: list[bytes] = []
        if chunk.reasoning:
            if self.kind != "thinking":
                out += self.open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out.append(self.delta({"type": "thinking_delta", "thinking": chunk.reasoning}))
        if chunk.text:
            if self.kind != "text":
                out += self.open("text", {"type": "text", "text": ""})
            out.append(self.delta({"type": "text_delta", "text": chunk.text}))
        for call in chunk.tool_calls or []:
            kind = f"tool:{call.index}"
            if self.kind != kind and (call.id or call.name or call.index not in self.tool_ids):
                ident = self.tool_ids.setdefault(call.index, tool_use_id(call.id))
                out += self.open(kind, {"type": "tool_use", "id": ident, "name": call.name or "",
                                        "input": {}})
            if call.arguments:
                out.append(self.delta({"type": "input_json_delta", "partial_json": call.arguments}))
        return out


async def message_events(reply: MessageReply, items: AsyncIterator[TurnItem], totals: StreamTotals,
                         input_tokens: int | None) -> AsyncIterator[bytes]:
    """The events of a streamed turn, ``message_start`` to ``message_stop``."""
    finish, matched = "stop", None
    start_usage = usage_body(Usage(prompt_tokens=input_tokens or 0))
    yield named_event("message_start", {"type": "message_start",
                                        "message": reply.shell([], start_usage)})
    yield named_event("ping", {"type": "ping"})
    blocks = _Blocks()
    async for item in chunks_and_notes(items, {}):  # Messages has no extension fields
        if isinstance(item, bytes):  # a progress note
            yield item
            continue
        for ev in blocks.feed(item):
            yield ev
        if item.finish_reason:
            finish, matched = item.finish_reason, item.stop_sequence
        if item.usage:
            totals.usage = item.usage
    if blocks.index < 0:  # nothing was generated: still one (empty) text block
        for ev in blocks.open("text", {"type": "text", "text": ""}):
            yield ev
    for ev in blocks.close():
        yield ev
    yield named_event("message_delta", {
        "type": "message_delta", "delta": reply.stop(finish, matched),
        "usage": usage_body(totals.usage)})
    yield named_event("message_stop", {"type": "message_stop"})
