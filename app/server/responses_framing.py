"""Responses API framing: the ``response`` object and its streamed event sequence for a turn.

Stream order (OpenAI's): ``response.created``, ``response.in_progress``, then per output item
``response.output_item.added`` → (message: ``response.content_part.added``,
``response.output_text.delta``…, ``response.output_text.done``, ``response.content_part.done`` |
function call: ``response.function_call_arguments.delta``…, ``.done`` | reasoning, the model's
thinking as the runtime split it out, before the answer: ``response.reasoning_text.delta``…,
``.done``) → ``response.output_item.done``, and last ``response.completed`` (or
``response.incomplete`` when ``max_output_tokens`` ran out).
A failure after the first byte is an ``error`` event followed by ``response.failed``.  Every event
has a ``sequence_number``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from app.providers.base import ChatChunk, ChatResult, ProviderError, Usage
from app.server.errors import from_provider_error
from app.server.serving import TurnItem
from app.server.streaming import StreamTotals, chunks_and_notes


def new_id(prefix: str) -> str:
    """``prefix`` + 32 hex digits (``resp``, ``msg``, ``fc``, ``ctc``, ``rs``)."""
    return f"{prefix}_{uuid.uuid4().hex}"


def usage_object(usage: Usage) -> dict[str, Any]:
    """Responses usage (``input_tokens``, ``output_tokens``, details); ``input_tokens`` is the whole
    prompt, and ``cached_tokens`` the part of it the runtime's prefix cache held (as OpenAI counts)."""
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    return {"input_tokens": usage.prompt_tokens, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.total_tokens}


def custom_input(arguments: str) -> str:
    """A freeform tool's text from the ``{"input": ...}`` arguments the model wrote."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments
    return value["input"] if isinstance(value, dict) and isinstance(value.get("input"), str) else arguments


class ResponseFrame:
    """Builds the ``response`` object of one request (``fields`` are the echoed request fields)."""

    def __init__(self, model: str, fields: dict[str, Any], custom_tools: set[str]) -> None:
        self.id = new_id("resp")
        self.created_at = int(time.time())
        self.model = model
        self.fields = fields
        self.custom_tools = custom_tools

    def response(self, status: str, output: list[dict[str, Any]], usage: Usage | None = None,
                 extra: dict[str, Any] | None = None, error: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id, "object": "response", "created_at": self.created_at,
            "completed_at": int(time.time()) if status in ("completed", "incomplete") else None,
            "status": status, "error": error,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "model": self.model, "output": output,
            "usage": usage_object(usage) if usage is not None else None,
            **self.fields,
        }
        if extra:
            body.update(extra)
        return body

    def call_item(self, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
        """A ``function_call`` item, or a ``custom_tool_call`` for a freeform tool."""
        if name in self.custom_tools:
            return {"type": "custom_tool_call", "id": new_id("ctc"), "call_id": call_id, "name": name,
                    "input": custom_input(arguments), "status": status}
        return {"type": "function_call", "id": new_id("fc"), "call_id": call_id, "name": name,
                "arguments": arguments, "status": status}

    def output(self, result: ChatResult) -> list[dict[str, Any]]:
        """The output items of a whole reply: its text as a message, then its tool calls."""
        status = "incomplete" if result.finish_reason == "length" else "completed"
        items: list[dict[str, Any]] = []
        if result.reasoning:
            items.append(reasoning_item(new_id("rs"), result.reasoning))
        if result.text or not result.tool_calls:
            items.append(message_item(new_id("msg"), result.text, status))
        for call in result.tool_calls or []:
            fn = call.get("function", {})
            items.append(self.call_item(call.get("id") or new_id("call"), fn.get("name", ""),
                                        fn.get("arguments") or "", "completed"))
        return items

    def whole(self, result: ChatResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The non-streamed ``response`` object."""
        status = "incomplete" if result.finish_reason == "length" else "completed"
        return self.response(status, self.output(result), result.usage, extra)


def message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {"type": "message", "id": item_id, "role": "assistant", "status": status,
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    """A ``reasoning`` output item holding the model's thinking as ``reasoning_text``."""
    return {"type": "reasoning", "id": item_id, "summary": [],
            "content": [{"type": "reasoning_text", "text": text}]}


def sse(payload: dict[str, Any]) -> bytes:
    """One Responses SSE event: an ``event:`` line naming its type, and the JSON data."""
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return f"event: {payload['type']}\ndata: {data}\n\n".encode()


class _Events:
    """The stream's state: numbered events, the open item, the finished items."""

    def __init__(self, frame: ResponseFrame) -> None:
        self.frame = frame
        self.seq = 0
        self.output: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None
        self.text = ""
        self.call_index: int | None = None

    def ev(self, kind: str, **payload: Any) -> bytes:
        out = sse({"type": kind, "sequence_number": self.seq, **payload})
        self.seq += 1
        return out

    def start_message(self) -> list[bytes]:
        item = message_item(new_id("msg"), "", "in_progress")
        item["content"] = []
        self.open, self.text = item, ""
        idx = len(self.output)
        return [self.ev("response.output_item.added", output_index=idx, item=item),
                self.ev("response.content_part.added", item_id=item["id"], output_index=idx,
                        content_index=0, part={"type": "output_text", "text": "", "annotations": [],
                                               "logprobs": []})]

    def start_reasoning(self) -> list[bytes]:
        item = reasoning_item(new_id("rs"), "")
        item["content"] = []
        self.open, self.text = item, ""
        return [self.ev("response.output_item.added", output_index=len(self.output), item=item)]

    def start_call(self, index: int, call_id: str, name: str) -> list[bytes]:
        item = self.frame.call_item(call_id, name, "", "in_progress")
        if item["type"] == "function_call":
            item["arguments"] = ""
        self.open, self.text, self.call_index = item, "", index
        return [self.ev("response.output_item.added", output_index=len(self.output), item=item)]

    def delta(self, text: str) -> list[bytes]:
        assert self.open is not None
        self.text += text
        idx, item_id = len(self.output), self.open["id"]
        if self.open["type"] == "message":
            return [self.ev("response.output_text.delta", item_id=item_id, output_index=idx,
                            content_index=0, delta=text, logprobs=[])]
        if self.open["type"] == "function_call":
            return [self.ev("response.function_call_arguments.delta", item_id=item_id,
                            output_index=idx, delta=text)]
        if self.open["type"] == "reasoning":
            return [self.ev("response.reasoning_text.delta", item_id=item_id, output_index=idx,
                            content_index=0, delta=text)]
        return []  # a custom tool's input is sent whole when the item is done

    def close(self, status: str) -> list[bytes]:
        if self.open is None:
            return []
        item, idx, events = self.open, len(self.output), []
        if item["type"] == "message":
            part = {"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}
            events += [self.ev("response.output_text.done", item_id=item["id"], output_index=idx,
                               content_index=0, text=self.text, logprobs=[]),
                       self.ev("response.content_part.done", item_id=item["id"], output_index=idx,
                               content_index=0, part=part)]
            item = {**item, "status": status, "content": [part]}
        elif item["type"] == "reasoning":
            events.append(self.ev("response.reasoning_text.done", item_id=item["id"], output_index=idx,
                                  content_index=0, text=self.text))
            item = reasoning_item(item["id"], self.text)
        elif item["type"] == "function_call":
            events.append(self.ev("response.function_call_arguments.done", item_id=item["id"],
                                  output_index=idx, name=item["name"], arguments=self.text))
            item = {**item, "status": "completed", "arguments": self.text}
        else:
            item = {**item, "status": "completed", "input": custom_input(self.text)}
        events.append(self.ev("response.output_item.done", output_index=idx, item=item))
        self.output.append(item)
        self.open, self.call_index = None, None
        return events

    def chunk(self, c: ChatChunk) -> list[bytes]:
        events: list[bytes] = []
        if c.reasoning:
            if self.open is None or self.open["type"] != "reasoning":
                events += self.close("completed") + self.start_reasoning()
            events += self.delta(c.reasoning)
        if c.text:
            if self.open is None or self.open["type"] != "message":
                events += self.close("completed") + self.start_message()
            events += self.delta(c.text)
        for t in c.tool_calls or []:
            if t.index != self.call_index:
                events += self.close("completed")
                events += self.start_call(t.index, t.id or new_id("call"), t.name or "")
            if t.arguments:
                events += self.delta(t.arguments)
        return events


async def response_events(frame: ResponseFrame, items: AsyncIterator[TurnItem], totals: StreamTotals,
                          on_done: Callable[[dict[str, Any]], None]) -> AsyncIterator[bytes]:
    """The whole event sequence; ``on_done`` gets the final ``response`` object (to store it)."""
    st = _Events(frame)
    extension: dict[str, Any] = {}
    finish = "stop"
    yield st.ev("response.created", response=frame.response("in_progress", []))
    yield st.ev("response.in_progress", response=frame.response("in_progress", []))
    try:
        async for c in chunks_and_notes(items, extension):
            if isinstance(c, bytes):  # a progress note
                yield c
                continue
            for out in st.chunk(c):
                yield out
            if c.finish_reason:
                finish = c.finish_reason
            if c.usage:
                totals.usage = c.usage
    except ProviderError as exc:
        err = from_provider_error(exc)
        totals.status = err.status
        for out in st.close("incomplete"):
            yield out
        yield st.ev("error", code=err.code, message=err.message, param=err.param)
        failed = frame.response("failed", st.output, totals.usage, extension,
                                error={"code": err.code, "message": err.message})
        on_done(failed)
        yield st.ev("response.failed", response=failed)
        return
    status = "incomplete" if finish == "length" else "completed"
    if not any(item["type"] != "reasoning" for item in st.output) and (
            st.open is None or st.open["type"] == "reasoning"):
        for out in st.close("completed") + st.start_message():
            yield out
    for out in st.close(status):
        yield out
    final = frame.response(status, st.output, totals.usage, extension)
    on_done(final)
    yield st.ev(f"response.{status}", response=final)
