"""The official openai SDK's Responses API on every local runtime, through the real server.

Each reply is checked against the Chat Completions endpoint on the same conversation (greedy, so
the texts and the prompt token counts must be equal): the Responses front-end is a translation,
not a second implementation.
"""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from tests.conftest import LiveServer

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 6},
                                         "days": {"type": "integer"}},
                          "required": ["city", "days"], "additionalProperties": False}}
GREEDY = {"model": "tater/base", "temperature": 0}


def chat_text(client: openai.OpenAI, messages: list[dict], n: int) -> tuple[str, int]:
    r = client.chat.completions.create(messages=messages, max_tokens=n, **GREEDY)
    return r.choices[0].message.content or "", r.usage.prompt_tokens


def test_create_stream_and_chain(runtime_server: LiveServer) -> None:
    client = runtime_server.client()
    first = client.responses.create(input="Say something.", instructions="You are terse.",
                                    max_output_tokens=8, **GREEDY)
    assert first.id.startswith("resp_") and first.object == "response"
    assert first.status == "incomplete" and first.incomplete_details.reason == "max_output_tokens"
    assert [o.type for o in first.output] == ["message"]
    assert first.output[0].content[0].type == "output_text"
    text, prompt = chat_text(client, [{"role": "system", "content": "You are terse."},
                                      {"role": "user", "content": "Say something."}], 8)
    assert first.output_text == text and text
    assert first.usage.input_tokens == prompt and first.usage.output_tokens == 8
    assert first.usage.total_tokens == prompt + 8
    assert first.usage.input_tokens_details.cached_tokens >= 0

    # streamed: the documented event sequence, numbered, and the same text
    with client.responses.stream(input="Say something.", instructions="You are terse.",
                                 max_output_tokens=8, **GREEDY) as stream:
        events = list(stream)
    final = events[-1].response  # (the SDK's get_final_response wants response.completed)
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.incomplete"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) >= 2 and "".join(deltas) == text == final.output_text
    assert final.status == "incomplete" and final.usage.output_tokens == 8

    # previous_response_id continues the conversation (the instructions are not carried over)
    second = client.responses.create(input="And again.", previous_response_id=first.id,
                                     max_output_tokens=6, **GREEDY)
    text2, prompt2 = chat_text(client, [{"role": "user", "content": "Say something."},
                                        {"role": "assistant", "content": text},
                                        {"role": "user", "content": "And again."}], 6)
    assert second.output_text == text2 and second.usage.input_tokens == prompt2
    assert second.previous_response_id == first.id
    assert client.responses.retrieve(second.id).output_text == text2
    items = client.responses.input_items.list(second.id, order="asc")
    assert [(i.type, getattr(i, "role", None)) for i in items.data] == [
        ("message", "user"), ("message", "assistant"), ("message", "user")]

    # the streamed first reply was stored too, and a deleted one is gone
    assert client.responses.retrieve(final.id).output_text == text
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(input="More.", previous_response_id=first.id, **GREEDY)
    assert "not found" in err.value.message and err.value.body["code"] == "response_not_found"


def test_forced_function_call_and_its_output(runtime_server: LiveServer) -> None:
    client = runtime_server.client()
    call_turn = client.responses.create(
        input="What is the weather in Paris?", tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"}, max_output_tokens=200, **GREEDY)
    calls = [o for o in call_turn.output if o.type == "function_call"]
    assert len(calls) == 1, call_turn.output
    call = calls[0]
    assert call.name == "get_weather" and call.call_id and call.id.startswith("fc_")
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])

    answer = client.responses.create(
        previous_response_id=call_turn.id, tools=[WEATHER], max_output_tokens=6,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"}],
        **GREEDY)
    assert answer.output[0].type == "message" and answer.output_text
    chat = [{"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": call.call_id, "type": "function",
                "function": {"name": "get_weather", "arguments": call.arguments}}]},
            {"role": "tool", "tool_call_id": call.call_id, "content": "Sunny, 21 C"}]
    ref = client.chat.completions.create(messages=chat, tools=[{"type": "function", "function": {
        k: WEATHER[k] for k in ("name", "description", "parameters")}}], max_tokens=6, **GREEDY)
    assert answer.usage.input_tokens == ref.usage.prompt_tokens
    assert answer.output_text == ref.choices[0].message.content

    # streamed, the call arrives as argument deltas
    with client.responses.stream(input="Weather in Oslo?", tools=[WEATHER], max_output_tokens=200,
                                 tool_choice={"type": "function", "name": "get_weather"},
                                 **GREEDY) as stream:
        events = list(stream)
    final = events[-1].response
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    jsonschema.validate(json.loads(done.arguments), WEATHER["parameters"])
    assert final.output[-1].type == "function_call" and final.output[-1].arguments == done.arguments
    assert kinds[-1] == f"response.{final.status}"


def test_text_format_json_schema(runtime_server: LiveServer) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                               "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    r = runtime_server.client().responses.create(
        input="A person, as JSON.", max_output_tokens=80,
        text={"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}},
        **GREEDY)
    assert r.status == "completed"
    jsonschema.validate(json.loads(r.output_text), schema)
    assert r.text.format.type == "json_schema"
