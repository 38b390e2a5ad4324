"""Checks shared by the local (llama.cpp) and remote (llama_cpp.server) surface proofs."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from tests.surface.conftest import ANSWER_SCHEMA, JSON_FORMAT, TOOLS, WEATHER_TOOL

ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_PARAMS = WEATHER_TOOL["function"]["parameters"]
NAMED = {"type": "function", "function": {"name": "get_weather"}}
HISTORY = [*ASK,
           {"role": "assistant", "content": None, "tool_calls": [
               {"id": "call_1", "type": "function",
                "function": {"name": "get_weather",
                             "arguments": '{"city": "Paris", "days": 1, "unit": "c"}'}}]},
           {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"}]


def check_calls(calls: Any, allowed: set[str]) -> None:
    """Every call is well formed, of an allowed tool, with schema-valid JSON arguments."""
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    assert calls
    for call in calls:
        assert call.type == "function" and call.id
        assert call.function.name in allowed
        jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])


def named_call(client: Any, model: str, seed: int, tools: list[dict[str, Any]] = TOOLS) -> Any:
    """A forced get_weather call (non-streamed); returns the one call after checking it."""
    resp = client.chat.completions.create(model=model, messages=ASK, tools=tools, tool_choice=NAMED,
                                          temperature=1, seed=seed, max_tokens=200)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert not choice.message.content
    assert len(choice.message.tool_calls) == 1
    check_calls(choice.message.tool_calls, {"get_weather"})
    return choice.message.tool_calls[0]


def streamed_equals_whole(client: Any, model: str, tool_choice: Any = NAMED) -> int:
    """The SDK's stream helper accumulates the same call as the non-streamed reply.

    Returns how many argument fragments arrived."""
    kwargs = dict(model=model, messages=ASK, tools=TOOLS, temperature=0, max_tokens=200,
                  tool_choice=tool_choice)
    whole = client.chat.completions.create(**kwargs).choices[0].message.tool_calls[0]
    fragments = 0
    with client.chat.completions.stream(**kwargs) as stream:
        for event in stream:
            if event.type == "tool_calls.function.arguments.delta":
                fragments += 1
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert (call.function.name, call.function.arguments) == (whole.function.name,
                                                             whole.function.arguments)
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_PARAMS)
    return fragments


def json_schema_runs(client: Any, model: str, runs: int, *, stream: bool) -> None:
    """``runs`` strict json_schema replies at temperature 1, each valid for the schema."""
    for seed in range(runs):
        kwargs = dict(model=model, messages=ASK, response_format=JSON_FORMAT, temperature=1,
                      seed=seed, max_tokens=300)
        if stream:
            text = "".join(c.choices[0].delta.content or "" for c in
                           client.chat.completions.create(stream=True, **kwargs) if c.choices)
        else:
            text = client.chat.completions.create(**kwargs).choices[0].message.content
        jsonschema.validate(json.loads(text), ANSWER_SCHEMA)
