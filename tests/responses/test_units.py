"""Unit tests of the logic around the real parts: the store's bounds, the stream's failure events,
and the input translation rules."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from app.providers.base import ChatChunk, ProviderError, ToolCallDelta, Usage
from app.server.protocol_responses import ResponseCreateRequest
from app.server.response_store import ResponseStore, StoredResponse
from app.server.responses_framing import ResponseFrame, response_events
from app.server.responses_input import item_messages, offered_tools, to_chat_request
from app.server.streaming import StreamTotals
from app.settings import ResponseStoreSettings


def entry(rid: str, text: str = "x") -> StoredResponse:
    return StoredResponse({"id": rid, "output": [{"type": "message", "content": text}]},
                          [{"type": "message", "role": "user", "content": text}])


def test_store_bounds_count_bytes_and_age() -> None:
    now = [0.0]
    limits = [ResponseStoreSettings(max_responses=3, max_bytes=10_000, ttl_minutes=1)]
    store = ResponseStore(lambda: limits[0], clock=lambda: now[0])
    for i in range(5):
        store.put(entry(f"r{i}"))
    assert len(store) == 3 and store.get("r0") is None and store.get("r4") is not None
    limits[0] = ResponseStoreSettings(max_responses=100, max_bytes=10_000, ttl_minutes=1)
    store.put(entry("big1", "y" * 3000))  # ~6 KB: fits with the small ones
    assert len(store) == 4
    store.put(entry("big2", "z" * 3000))  # the oldest go until the bytes fit again
    assert store.total_bytes <= 10_000 and store.get("big2") is not None
    assert store.get("big1") is None and store.get("r4") is None
    now[0] = 61.0  # everything is older than a minute
    assert store.get("big2") is None and len(store) == 0 and store.total_bytes == 0
    store.put(entry("new"))
    assert store.delete("new") and not store.delete("new")


def test_conversation_is_history_input_then_output() -> None:
    first = entry("a", "q1")
    second = StoredResponse({"id": "b", "output": [{"type": "message", "content": "a2"}]},
                            [{"type": "message", "role": "user", "content": "q2"}],
                            history=first.conversation())
    assert [i["content"] for i in second.conversation()] == ["q1", "q1", "q2", "a2"]
    assert [i.get("role") for i in second.conversation()] == ["user", None, "user", None]


async def _failing() -> AsyncIterator[ChatChunk]:
    yield ChatChunk(text="Hel")
    yield ChatChunk(text="lo")
    raise ProviderError("the runtime fell over", code="runtime_error")


def _events(items: AsyncIterator[ChatChunk]) -> tuple[list[dict], list[dict]]:
    frame = ResponseFrame("m", {"tools": []}, set())
    done: list[dict] = []

    async def run() -> list[bytes]:
        return [e async for e in response_events(frame, items, StreamTotals(), done.append)]

    raw = asyncio.run(run())
    events = [json.loads(e.decode().split("data: ", 1)[1]) for e in raw]
    return events, done


def test_a_failure_after_the_first_byte_is_an_error_event_then_response_failed() -> None:
    events, done = _events(_failing())
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-2:] == ["error", "response.failed"]
    assert events[-2]["code"] == "runtime_error" and "fell over" in events[-2]["message"]
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "runtime_error"
    assert failed["output"][0]["content"][0]["text"] == "Hello" and done == [failed]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


async def _text_then_calls() -> AsyncIterator[ChatChunk]:
    yield ChatChunk(text="Let me check.")
    yield ChatChunk(tool_calls=[ToolCallDelta(0, id="call_a", name="f", arguments='{"x":')])
    yield ChatChunk(tool_calls=[ToolCallDelta(0, arguments=" 1}")])
    yield ChatChunk(tool_calls=[ToolCallDelta(1, id="call_b", name="g", arguments="{}")])
    yield ChatChunk(finish_reason="tool_calls", usage=Usage(7, 5))


def test_text_then_two_calls_stream_as_three_items() -> None:
    events, done = _events(_text_then_calls())
    added = [e["item"]["type"] for e in events if e["type"] == "response.output_item.added"]
    assert added == ["message", "function_call", "function_call"]
    out = done[0]["output"]
    assert [(o["type"], o.get("arguments")) for o in out] == [
        ("message", None), ("function_call", '{"x": 1}'), ("function_call", "{}")]
    assert [o.get("call_id") for o in out[1:]] == ["call_a", "call_b"]
    assert done[0]["status"] == "completed" and done[0]["usage"]["input_tokens"] == 7
    assert events[-1]["type"] == "response.completed"


def test_items_become_chat_messages_by_the_documented_rules() -> None:
    messages = item_messages([
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be brief."}]},
        {"role": "user", "content": "List files."},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sure."}]},
        {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": '{"cmd":"ls"}'},
        {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "*** Begin"},
        {"type": "function_call_output", "call_id": "c1", "output": "a.txt"},
        {"type": "custom_tool_call_output", "call_id": "c2",
         "output": [{"type": "input_text", "text": "ok"}]},
        {"type": "web_search_call", "id": "ws_1"},
    ])
    assert [(m.role, m.content) for m in messages] == [
        ("system", "Be brief."), ("user", "List files."), ("assistant", "Sure."), ("tool", "a.txt"),
        ("tool", "ok")]
    calls = messages[2].tool_calls
    assert [c["function"]["name"] for c in calls] == ["shell", "apply_patch"]
    assert json.loads(calls[1]["function"]["arguments"]) == {"input": "*** Begin"}


def test_tools_and_formats_translate() -> None:
    data = ResponseCreateRequest.model_validate({
        "input": "hi", "instructions": "Sys.", "max_output_tokens": 9, "reasoning": {"effort": "low"},
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}},
                  {"type": "custom", "name": "patch"}, {"type": "local_shell"},
                  {"type": "mcp", "server_label": "x"}],
        "tool_choice": {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function",
                                                                                 "name": "f"}]},
        "text": {"format": {"type": "json_schema", "name": "o", "schema": {"type": "object"}}}})
    offered = offered_tools(data)
    assert [t["function"]["name"] for t in offered.tools] == ["f", "patch"] and offered.custom == {"patch"}
    assert len(offered.echoed) == 4
    req = to_chat_request(data, [{"type": "message", "role": "user", "content": "hi"}], offered)
    assert req.messages[0].role == "system" and req.max_tokens == 9
    assert req.tool_choice == "required" and [t["function"]["name"] for t in req.tools] == ["f"]
    assert req.response_format == {"type": "json_schema", "json_schema": {"name": "o",
                                                                          "schema": {"type": "object"}}}
    assert req.reasoning_effort == "low"
