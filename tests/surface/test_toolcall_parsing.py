"""Unit tests: the tool-call stream parser, prompt preparation and the call grammar."""

from __future__ import annotations

import json

import pytest

from app.providers.base import ChatMessage, UnsupportedError, accumulate_tool_calls
from app.providers.constraints import bounded_integers
from app.providers.local_structured import response_format_schema, tool_call_lark
from app.providers.toolcalls import ToolCallParser, parse_tool_output, prepare_messages

CALL = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", '
        '"days": [1, {"x": "}"}]}}\n</tool_call>')


def feed_in_pieces(text: str, size: int) -> tuple[str, list]:
    parser = ToolCallParser()
    out, frags = "", []
    for i in range(0, len(text), size):
        t, f = parser.feed(text[i:i + size])
        out, frags = out + t, frags + f
    t, f = parser.finish()
    return out + t, frags + f


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_hermes_call_streams_the_same_at_any_chunking(size: int) -> None:
    text, frags = feed_in_pieces(CALL + "\n" + CALL.replace("Paris", "Rome"), size)
    assert text == ""
    calls: dict = {}
    accumulate_tool_calls(calls, frags)
    assert [c["function"]["name"] for c in calls.values()] == ["get_weather", "get_weather"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris", "days": [1, {"x": "}"}]}
    assert json.loads(calls[1]["function"]["arguments"])["city"] == "Rome"
    firsts = [f for f in frags if f.id]
    assert len(firsts) == 2 and all(f.name for f in firsts)
    assert all(f.name is None for f in frags if not f.id)


def test_plain_text_passes_through_and_mentions_are_kept() -> None:
    text, calls = parse_tool_output("Hello <b>there</b>, I will not call <tool anything.")
    assert text == "Hello <b>there</b>, I will not call <tool anything." and calls == []


def test_text_then_call_and_bare_json_and_other_key_order() -> None:
    text, calls = parse_tool_output("Let me check.\n" + CALL)
    assert text == "Let me check.\n" and calls[0]["function"]["name"] == "get_weather"
    text, calls = parse_tool_output('  {"name": "add", "arguments": {"a": 1, "b": 2}}')
    assert text == "" and json.loads(calls[0]["function"]["arguments"]) == {"a": 1, "b": 2}
    text, calls = parse_tool_output('<tool_call>{"arguments": {"a": 1}, "name": "add"}</tool_call>')
    assert calls[0]["function"]["name"] == "add"
    text, calls = parse_tool_output('{"answer": 42}')  # JSON, but not a call
    assert text == '{"answer": 42}' and calls == []


def test_history_without_native_tool_support_becomes_text() -> None:
    msgs = [ChatMessage("system", "Be brief."), ChatMessage("user", "weather?"),
            ChatMessage("assistant", "", tool_calls=({"id": "c1", "type": "function", "function": {
                "name": "get_weather", "arguments": '{"city": "Paris"}'}},)),
            ChatMessage("tool", "sunny", tool_call_id="c1")]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    out = prepare_messages(msgs, tools, native=False)
    assert out[0]["content"].startswith("Be brief.\n\n# Tools")
    assert '"name":"get_weather"' in out[0]["content"]
    assert out[2] == {"role": "assistant", "content":
                      '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'}
    assert out[3] == {"role": "user", "content": "<tool_response>\nsunny\n</tool_response>"}
    native = prepare_messages(msgs, tools, native=True)
    assert native[2]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}


def test_response_format_shapes() -> None:
    assert response_format_schema({"type": "text"}) is None
    assert response_format_schema({"type": "json_object"}) == {"type": "object"}
    with pytest.raises(UnsupportedError) as info:
        response_format_schema({"type": "json_schema", "json_schema": {"name": "x"}})
    assert "json_schema.schema" in info.value.message and info.value.status == 400


def test_grammar_texts_name_each_tool() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"n": {"type": "integer"}}}}}]
    auto = tool_call_lark(tools, multiple=False, tail="text")
    assert '"<tool_call>\\n{\\"name\\": \\"f\\", \\"arguments\\": "' in auto
    assert auto.startswith("start: calls | text")
    lark = tool_call_lark(tools, multiple=True)
    assert lark.startswith('start: call ("\\n" call)*') and '"maximum": 9007199254740991' in lark
    assert bounded_integers({"type": ["integer", "null"], "maximum": 3}) == {
        "type": ["integer", "null"], "maximum": 3, "minimum": -9007199254740991}
