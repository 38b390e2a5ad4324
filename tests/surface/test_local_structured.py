"""Structured output and tool calls on MLX and Transformers (llguidance), through the SDK.

Random weights again: every valid reply below is the grammar's doing.
"""

from __future__ import annotations

import importlib

import openai
import pytest

from tests.conftest import LiveServer
from tests.surface.cases import ASK, NAMED, check_calls, json_schema_runs, named_call, streamed_equals_whole
from tests.surface.conftest import TOOLS

importlib.import_module("llguidance")


def test_json_schema_strict_20_runs(local_server: LiveServer) -> None:
    client = local_server.client()
    json_schema_runs(client, "tater/direct", 20, stream=False)
    json_schema_runs(client, "tater/direct", 3, stream=True)


def test_named_and_required_tool_calls(local_server: LiveServer) -> None:
    client = local_server.client()
    for seed in range(3):
        named_call(client, "tater/direct", seed)
    resp = client.chat.completions.create(model="tater/direct", messages=ASK, tools=TOOLS,
                                          tool_choice="required", parallel_tool_calls=False,
                                          temperature=1, seed=7, max_tokens=300)
    assert resp.choices[0].finish_reason == "tool_calls"
    check_calls(resp.choices[0].message.tool_calls, {"get_weather", "add"})


def test_streamed_call_accumulates_like_the_whole_one(local_server: LiveServer) -> None:
    assert streamed_equals_whole(local_server.client(), "tater/direct", NAMED) > 3


def test_invalid_schema_is_a_400_naming_the_problem(local_server: LiveServer) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"n": {"type": "string", "maxLength": "x"}}}}}
    with pytest.raises(openai.BadRequestError) as info:
        local_server.client().chat.completions.create(model="tater/direct", messages=ASK,
                                                      response_format=fmt, max_tokens=5)
    assert info.value.body["param"] == "response_format"
    assert "(at #/properties/n/maxLength)" in info.value.body["message"]
