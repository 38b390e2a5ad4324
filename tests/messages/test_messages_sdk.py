"""The official anthropic SDK against the real server on every local runtime."""

from __future__ import annotations

import anthropic
import pytest

from tests.conftest import LiveServer
from tests.messages.conftest import anthropic_client, prompt_size

SYSTEM = "You are terse."
MESSAGES = [{"role": "user", "content": "Say something."}]
GREEDY = {"temperature": 0}  # (the SDK no longer types sampling parameters; the API accepts them)
WEATHER = {"name": "get_weather", "description": "The weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                            "required": ["city"], "additionalProperties": False}}


def test_create_counts_and_stream_agree(served: LiveServer) -> None:
    client = anthropic_client(served)
    msg = client.messages.create(model="tater/base", system=SYSTEM, messages=MESSAGES, max_tokens=12,
                                 extra_body=GREEDY)
    assert msg.id.startswith("msg_") and msg.type == "message" and msg.role == "assistant"
    assert msg.stop_reason == "max_tokens" and msg.stop_sequence is None
    assert [b.type for b in msg.content] == ["text"] and msg.content[0].text.strip()
    assert msg.usage.output_tokens == 12 and msg.usage.input_tokens > 0
    assert msg.usage.cache_read_input_tokens == 0
    counted = client.messages.count_tokens(model="tater/base", system=SYSTEM, messages=MESSAGES)
    assert counted.input_tokens == prompt_size(msg.usage)

    with client.messages.stream(model="tater/base", system=SYSTEM, messages=MESSAGES, max_tokens=12,
                                extra_body=GREEDY) as stream:
        deltas = [t for t in stream.text_stream]
        final = stream.get_final_message()
    assert len(deltas) >= 3 and "".join(deltas) == msg.content[0].text
    assert final.content[0].text == msg.content[0].text
    assert final.stop_reason == "max_tokens"
    assert prompt_size(final.usage) == prompt_size(msg.usage) and final.usage.output_tokens == 12


def test_forced_tool_use_then_tool_result(served: LiveServer) -> None:
    client = anthropic_client(served)
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    msg = client.messages.create(model="tater/base", messages=ask, tools=[WEATHER], max_tokens=200,
                                 extra_body=GREEDY, tool_choice={"type": "tool", "name": "get_weather"})
    assert msg.stop_reason == "tool_use"
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "get_weather" and uses[0].id.startswith("toolu_")
    assert isinstance(uses[0].input.get("city"), str)
    counted = client.messages.count_tokens(model="tater/base", messages=ask, tools=[WEATHER],
                                           tool_choice={"type": "tool", "name": "get_weather"})
    assert counted.input_tokens == prompt_size(msg.usage)

    result = {"type": "tool_result", "tool_use_id": uses[0].id,
              "content": [{"type": "text", "text": "Sunny, 21 C"}]}
    turn2 = [*ask, {"role": "assistant", "content": [b.model_dump() for b in msg.content]},
             {"role": "user", "content": [result]}]
    answer = client.messages.create(model="tater/base", messages=turn2, tools=[WEATHER], max_tokens=8,
                                    extra_body=GREEDY, tool_choice={"type": "none"})
    assert answer.stop_reason == "max_tokens" and answer.content[0].type == "text"
    assert prompt_size(answer.usage) > prompt_size(msg.usage)  # the call and its result are in the prompt
    counted2 = client.messages.count_tokens(model="tater/base", messages=turn2, tools=[WEATHER])
    assert counted2.input_tokens == prompt_size(answer.usage)

    with client.messages.stream(model="tater/base", messages=ask, tools=[WEATHER], max_tokens=200,
                                extra_body=GREEDY, tool_choice={"type": "tool", "name": "get_weather"}) as s:
        final = s.get_final_message()
    streamed = [b for b in final.content if b.type == "tool_use"]
    assert final.stop_reason == "tool_use" and streamed[0].input == uses[0].input


def test_errors_have_anthropics_shape(served: LiveServer) -> None:
    client = anthropic_client(served)
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such-model", messages=MESSAGES, max_tokens=4)
    assert missing.value.body["type"] == "error" and set(missing.value.body) == {"type", "error"}
    assert missing.value.body["error"]["type"] == "not_found_error"
    assert "no-such-model" in missing.value.body["error"]["message"]
    with pytest.raises(anthropic.AuthenticationError) as denied:
        anthropic_client(served, api_key="wrong").messages.create(model="tater/base", messages=MESSAGES,
                                                                  max_tokens=4)
    assert denied.value.body["type"] == "error"
    assert denied.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="tater/base", messages=MESSAGES, max_tokens=0)
    assert bad.value.body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in bad.value.body["error"]["message"]
