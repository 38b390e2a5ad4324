"""Messages request -> provider request: blocks, tools, tool_choice, billing line, model tiers."""

from __future__ import annotations

import json

import pytest

from app.server.errors import ApiError
from app.server.messages_request import chat_messages, chat_request, system_text, translate_model
from app.server.protocol_messages import CountTokensRequest, MessagesRequest
from app.settings import ModelRow, Settings

BILLING = "x-anthropic-billing-header: cc_version=2.1.197.{n}; cc_entrypoint=sdk-cli; cch={n}abc;"
SCHEMA = {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}


def body(**kw: object) -> MessagesRequest:
    kw.setdefault("model", "tater/base")
    kw.setdefault("max_tokens", 10)
    kw.setdefault("messages", [{"role": "user", "content": "hi"}])
    return MessagesRequest.model_validate(kw)


def test_billing_line_is_removed_so_turns_share_their_prefix() -> None:
    system = [{"type": "text", "text": BILLING.format(n=1)},
              {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}]
    first = chat_messages(body(system=system))
    second = chat_messages(body(system=[{**system[0], "text": BILLING.format(n=2)}, system[1]]))
    assert first == second
    assert first[0].role == "system" and first[0].content == "You are Claude Code."
    assert system_text("x-anthropic-billing-header: a=1;\nKeep me.") == "Keep me."
    assert system_text("Mentions x-anthropic-billing-header: inline") == \
        "Mentions x-anthropic-billing-header: inline"


def test_blocks_become_chat_history() -> None:
    req = chat_request(body(messages=[
        {"role": "user", "content": [{"type": "text", "text": "run ls"},
                                     {"type": "image", "source": {"type": "base64", "data": "AA=="}}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "list files", "signature": "sig"},
            {"type": "text", "text": "Listing."},
            {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
             "content": [{"type": "text", "text": "denied"}]},
            {"type": "text", "text": "go on"}]},
        {"role": "system", "content": "Be brief."},
    ], tools=[{"name": "Bash", "description": "Run", "input_schema": SCHEMA},
              {"type": "web_search_20250305", "name": "web_search"}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True}, top_k=5,
        stop_sequences=["END"], metadata={"user_id": "u1"}))
    roles = [(m.role, m.content) for m in req.messages]
    assert roles == [("user", "run ls"), ("assistant", "Listing."), ("tool", "a.txt"),
                     ("tool", "Error: denied"),
                     ("user", "go on\n\n<system-reminder>\nBe brief.\n</system-reminder>")]
    call = req.messages[1].tool_calls[0]
    assert call["id"] == "toolu_1" and call["function"]["name"] == "Bash"
    assert json.loads(call["function"]["arguments"]) == {"command": "ls"}
    assert req.messages[2].tool_call_id == "toolu_1"
    assert req.tools == [{"type": "function", "function": {"name": "Bash", "description": "Run",
                                                            "parameters": SCHEMA}}]
    assert req.tool_choice == "required" and req.parallel_tool_calls is False
    assert req.extra == {"top_k": 5} and req.stop == ["END"] and req.user == "u1"


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, "auto"), ({"type": "none"}, "none"),
    ({"type": "tool", "name": "Bash"}, {"type": "function", "function": {"name": "Bash"}})])
def test_tool_choice(choice: dict, expected: object) -> None:
    req = chat_request(body(tools=[{"name": "Bash", "input_schema": SCHEMA}], tool_choice=choice))
    assert req.tool_choice == expected and req.parallel_tool_calls is None


def test_empty_conversation_and_nameless_tool_choice_are_400s() -> None:
    with pytest.raises(ApiError) as empty:
        chat_messages(CountTokensRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}))
    assert empty.value.status == 400
    with pytest.raises(ApiError) as nameless:
        chat_request(body(tools=[{"name": "Bash", "input_schema": SCHEMA}], tool_choice={"type": "tool"}))
    assert nameless.value.status == 400 and nameless.value.param == "tool_choice.name"


def test_claude_model_names_map_by_tier_or_pattern() -> None:
    rows = [ModelRow(id="llama_cpp::big", provider="llama_cpp", source="big.gguf"),
            ModelRow(id="llama_cpp::small", provider="llama_cpp", source="small.gguf")]
    plain = Settings(models=rows, active_model="llama_cpp::big")
    assert translate_model("claude-opus-4-5-20251101", plain) is None  # the active model
    assert translate_model("tater/hydra", plain) == "tater/hydra"
    assert translate_model("llama_cpp::small", plain) == "llama_cpp::small"
    assert translate_model("gpt-4o", plain) == "gpt-4o"  # not a Claude name: routing says 404
    mapped = plain.model_copy(update={"messages_models": {
        "haiku": "llama_cpp::small", "claude-3-5-*": "tater/hydra", "opus": ""}})
    assert translate_model("claude-haiku-4-5-20251001", mapped) == "llama_cpp::small"
    assert translate_model("claude-3-5-sonnet-latest", mapped) == "tater/hydra"
    assert translate_model("claude-opus-4-5", mapped) is None
    assert translate_model("claude-sonnet-4-5", mapped) is None


def test_sampling_and_reasoning_options() -> None:
    req = chat_request(body(temperature=0.2, top_p=0.9, thinking={"type": "disabled"}))
    assert (req.temperature, req.top_p, req.reasoning_effort) == (0.2, 0.9, "none")
    req = chat_request(body(thinking={"type": "adaptive"}, output_config={
        "effort": "max", "format": {"type": "json_schema", "schema": SCHEMA}}))
    assert req.reasoning_effort == "xhigh" and req.temperature == 1.0
    assert req.response_format == {"type": "json_schema", "json_schema": {"name": "output", "schema": SCHEMA}}
    assert req.thinking_budget is None
    assert chat_request(body(thinking={"type": "enabled", "budget_tokens": 64})).thinking_budget == 64


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "web_search"}])
def test_a_forced_tool_choice_needs_a_client_tool(choice: dict) -> None:
    """Server tools (no ``input_schema``) cannot run here: forcing a call needs a client tool,
    as the OpenAPI document says (``contains`` a tool with an ``input_schema``)."""
    from pydantic import ValidationError

    server_only = [{"type": "web_search_20250305", "name": "web_search"}]
    for model in (CountTokensRequest, MessagesRequest):
        with pytest.raises(ValidationError, match="needs a client tool"):
            model.model_validate({"model": "m", "max_tokens": 5, "tool_choice": choice,
                                  "tools": server_only, "messages": [{"role": "user", "content": "hi"}]})
    mixed = body(tools=[*server_only, {"name": "web_search2", "input_schema": SCHEMA}],
                 tool_choice={"type": "any"})
    assert chat_request(mixed).tool_choice == "required"
