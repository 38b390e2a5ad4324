"""Tool calling and structured output on the tiny llama.cpp model, through the openai SDK.

The model has random weights, so every valid call below is the grammar's doing.
"""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from app.server.messages import normalise_messages
from app.server.protocol import ChatMessageIn
from tests.conftest import LiveServer
from tests.surface.cases import (
    ASK,
    HISTORY,
    check_calls,
    json_schema_runs,
    named_call,
    streamed_equals_whole,
)
from tests.surface.conftest import TOOLS


def test_named_function_gives_schema_valid_arguments(tools_server: LiveServer) -> None:
    client = tools_server.client()
    for seed in range(3):
        call = named_call(client, "tater/direct", seed)
        assert call.id.startswith("call_")


def test_required_gives_valid_calls_of_listed_tools(tools_server: LiveServer) -> None:
    client = tools_server.client()
    for seed in range(3):
        resp = client.chat.completions.create(
            model="tater/direct", messages=ASK, tools=TOOLS, tool_choice="required",
            temperature=1, seed=seed, max_tokens=300, parallel_tool_calls=False)
        assert resp.choices[0].finish_reason == "tool_calls"
        assert len(resp.choices[0].message.tool_calls) == 1
        check_calls(resp.choices[0].message.tool_calls, {"get_weather", "add"})


def test_streamed_call_accumulates_to_the_non_streamed_one(tools_server: LiveServer) -> None:
    assert streamed_equals_whole(tools_server.client(), "tater/direct") > 3


def test_raw_stream_fragments_have_index_and_id_only_first(tools_server: LiveServer) -> None:
    stream = tools_server.client().chat.completions.create(
        model="tater/direct", messages=ASK, tools=TOOLS, tool_choice="required", temperature=1,
        seed=4, max_tokens=300, stream=True)
    frags, finish = [], None
    for chunk in stream:
        for choice in chunk.choices:
            frags += choice.delta.tool_calls or []
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert all(f.index is not None for f in frags)
    firsts = {}
    for f in frags:
        if f.index not in firsts:
            firsts[f.index] = f
            assert f.id and f.function.name and f.type == "function"
        else:
            assert f.id is None and f.function.name is None
    args = {i: "".join(f.function.arguments or "" for f in frags if f.index == i) for i in firsts}
    for i, text in args.items():
        name = firsts[i].function.name
        schema = next(t for t in TOOLS if t["function"]["name"] == name)["function"]["parameters"]
        jsonschema.validate(json.loads(text), schema)


def test_auto_may_answer_in_text(tools_server: LiveServer) -> None:
    resp = tools_server.client().chat.completions.create(
        model="tater/direct", messages=ASK, tools=TOOLS, temperature=0, max_tokens=8)
    choice = resp.choices[0]
    # The random model never starts with "<", so under "auto" it answers in text.
    assert choice.message.content and choice.message.tool_calls is None
    assert choice.finish_reason == "length"


def test_tool_history_is_accepted_and_rendered(tools_server: LiveServer) -> None:
    history = HISTORY
    resp = tools_server.client().chat.completions.create(
        model="tater/direct", messages=history, tools=TOOLS, tool_choice="none", temperature=0,
        max_tokens=4)
    assert resp.choices[0].message.content
    hub = tools_server.services.hub  # type: ignore[attr-defined]
    model = hub.load(tools_server.settings.current.active_model).result()
    messages = normalise_messages([ChatMessageIn.model_validate(m) for m in history])
    seen, add_bos = model.render_prompt(messages, TOOLS)
    # ...and that rendering is exactly what the runtime processed for the request:
    processed = model.llm.last_prompt if model.engine is None else model.engine.last_prompt
    assert model.llm.tokenize(seen.encode(), add_bos=add_bos, special=True) == processed
    assert '<tools>\n{"type": "function", "function": {"name": "get_weather"' in seen
    assert ('<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": '
            '{"city": "Paris", "days": 1, "unit": "c"}}\n</tool_call><|im_end|>') in seen
    assert "<|im_start|>user\n<tool_response>\nsunny, 21 C\n</tool_response><|im_end|>" in seen
    assert seen.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_strict_validates_20_times(tools_server: LiveServer, stream: bool) -> None:
    json_schema_runs(tools_server.client(), "tater/direct", 5 if stream else 20, stream=stream)


def test_json_object_is_an_object(tools_server: LiveServer) -> None:
    resp = tools_server.client().chat.completions.create(
        model="tater/direct", messages=ASK, response_format={"type": "json_object"},
        temperature=1, seed=1, max_tokens=300)
    text = resp.choices[0].message.content
    if resp.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
    else:  # free-form strings may run long on a random model
        assert text.lstrip().startswith("{")


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"n": {"type": "integer", "minimum": "3"}}}}}},
     "response_format", '"3" is not of type "number" (at #/properties/n/minimum)'),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "string", "minLength": 5, "maxLength": 3}}}}, "response_format",
     "minLength (5) is greater than maxLength (3)"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
     "response_format", "json_schema.schema"),
    ({"response_format": {"type": "yaml"}}, "response_format.type", ""),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"enum": []}}}}}],
      "tool_choice": "required"}, "tools", "tools[0].function.parameters: enum at "
     "#/properties/x is empty"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice", "required"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice", "nope"),
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]},
     "tools[0].function.name", ""),
])
def test_bad_shapes_are_400_naming_the_param(tools_server: LiveServer, body: dict, param: str,
                                             words: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        tools_server.client().chat.completions.create(model="tater/direct", messages=ASK,
                                                      max_tokens=5, **body)
    err = info.value.body
    assert err["param"] == param, err
    assert words in err["message"]
