"""OpenAI Chat Completions framing: response objects, stream deltas and SSE events for a turn."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from quart import Response

from app.providers.base import ChatChunk, ChatResult, ToolCallDelta, Usage
from app.server.serving import TurnItem
from app.server.sse import event
from app.server.streaming import StreamTotals, chunks_and_notes, sse_response


class Reply:
    """Builds OpenAI response objects for one request; reasoning goes under ``reasoning_field``."""

    def __init__(self, model: str, reasoning_field: str = "reasoning_content", *,
                 legacy_functions: bool = False) -> None:
        self.id = "chatcmpl-" + uuid.uuid4().hex
        self.created = int(time.time())
        self.model = model
        self.reasoning_field = reasoning_field
        self.legacy_functions = legacy_functions
        """The request used ``functions``: a call is ``function_call``, as OpenAI answered them."""

    def completion(self, result: ChatResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": result.text}
        if result.reasoning:
            message[self.reasoning_field] = result.reasoning
        if result.tool_calls:
            message["tool_calls"] = result.tool_calls
            message["content"] = result.text or None
        body: dict[str, Any] = {
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": result.finish_reason,
                         "logprobs": {"content": result.logprobs} if result.logprobs else None}],
            "usage": result.usage.to_dict(),
        }
        if self.legacy_functions:
            as_legacy_function_call(body["choices"][0])
        if extra:
            body.update(extra)
        return body

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None,
              logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason,
                  "logprobs": {"content": logprobs} if logprobs else None}
        if self.legacy_functions:
            as_legacy_function_call(choice)
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [choice]}

    def usage_chunk(self, usage: Usage) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": usage.to_dict()}


def as_legacy_function_call(choice: dict[str, Any]) -> None:
    """Rewrite a choice's first tool call as the legacy ``function_call`` (message or delta)."""
    body = choice.get("message") or choice.get("delta") or {}
    calls = body.pop("tool_calls", None)
    if calls and calls[0].get("index", 0) == 0 and calls[0].get("function"):
        fn = calls[0]["function"]
        body["function_call"] = {k: fn[k] for k in ("name", "arguments") if k in fn}
    if choice.get("finish_reason") == "tool_calls":
        choice["finish_reason"] = "function_call"


def chunk_delta(c: ChatChunk, reasoning_field: str = "reasoning_content") -> dict[str, Any] | None:
    """The ``delta`` for a provider chunk, or None when it carries nothing to send."""
    delta: dict[str, Any] = {}
    if c.reasoning:
        delta[reasoning_field] = c.reasoning
    if c.text:
        delta["content"] = c.text
    if c.tool_calls:
        calls = []
        for t in c.tool_calls:
            if not (t.id or t.name or t.arguments):
                continue  # nothing to say (the SDK's stream helper wants a function on each)
            frag: dict[str, Any] = {"index": t.index}
            if t.id:
                frag["id"] = t.id
                frag["type"] = "function"
            fn: dict[str, Any] = {"name": t.name} if t.name else {}
            fn["arguments"] = t.arguments
            frag["function"] = fn
            calls.append(frag)
        if calls:
            delta["tool_calls"] = calls
    return delta or None


def one_fragment_per_call(c: ChatChunk) -> list[ChatChunk]:
    """``c`` split so that no delta carries two fragments of one call (clients that read only
    one per index, as with llama-server's first chunk, would lose the rest: llama.cpp#22722)."""
    parts: list[list[ToolCallDelta]] = []
    for frag in c.tool_calls or []:
        if not parts or any(f.index == frag.index for f in parts[-1]):
            parts.append([])
        parts[-1].append(frag)
    if len(parts) <= 1:
        return [c]
    first = ChatChunk(text=c.text, reasoning=c.reasoning, tool_calls=parts[0], logprobs=c.logprobs)
    return [first, *(ChatChunk(tool_calls=p) for p in parts[1:])]


async def chat_events(reply: Reply, items: AsyncIterator[TurnItem], totals: StreamTotals,
                      include_usage: bool) -> AsyncIterator[bytes]:
    """OpenAI ``chat.completion.chunk`` events: role first, deltas, finish, optional usage.

    The role chunk has no ``content``, so a reply that only calls tools accumulates (in the
    SDKs' stream helpers) to ``content: null`` as the non-streamed message has it; a reply
    with neither text nor calls sends ``content: ""`` before the finish."""
    finish = "stop"
    extension: dict[str, Any] = {}
    said = False  # any content or tool call sent
    yield event(reply.chunk({"role": "assistant"}))
    async for c in chunks_and_notes(items, extension):
        if isinstance(c, bytes):  # a progress note
            yield c
            continue
        for i, part in enumerate(one_fragment_per_call(c)):
            delta = chunk_delta(part, reply.reasoning_field)
            if delta:
                said = said or "content" in delta or "tool_calls" in delta
                yield event(reply.chunk(delta, logprobs=c.logprobs if i == 0 else None))
        if c.finish_reason:
            finish = c.finish_reason
        if c.usage:
            totals.usage = c.usage
    if not said:
        yield event(reply.chunk({"content": ""}))
    yield event({**reply.chunk({}, finish), **extension})
    if include_usage:
        yield event(reply.usage_chunk(totals.usage))


async def stream_response(reply: Reply, items: AsyncIterator[TurnItem], include_usage: bool) -> Response:
    """A streamed chat reply; errors before the first chunk still get a proper HTTP status."""
    return await sse_response(items, lambda it, totals: chat_events(reply, it, totals, include_usage))
