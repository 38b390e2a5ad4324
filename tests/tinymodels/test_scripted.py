"""Scripted tiny models: every real runtime plays the script exactly, short prompt or long."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.providers.base import ChatMessage, ChatModel, ChatRequest
from app.tinymodels.scripted import (
    TOOL_RESULT_TURN,
    USER_TURN,
    ScriptedFiles,
    build_scripted,
    hermes_template,
    split_script,
    write_scripted,
)

TOOL_SCRIPT = 'Let me check.<tool_call>\n{"name": "get_time", "arguments": {"city": "Paris"}}\n</tool_call>'
FINAL_SCRIPT = "It is noon in Paris. The time is 12:00, and the weather is fine."
THINK_SCRIPT = "<think>plan: say hi, then stop</think>Hello! Hello again, and hello."

FILLER = ("You are a coding agent. Read the files, run the tests, and fix the bug in "
          "src/app.py: the function add(a, b) returns a - b instead of a + b. ")


def test_chunks_are_unique_and_join_to_the_script() -> None:
    taken: set[str] = set()
    a = split_script(TOOL_SCRIPT, taken, set())
    b = split_script(FINAL_SCRIPT, taken, set())
    assert "".join(a) == TOOL_SCRIPT and "".join(b) == FINAL_SCRIPT
    assert len(set(a + b)) == len(a + b)
    assert "<tool_call>" in a  # a tag stays one token when it is unique
    harmony = split_script("<|channel|>analysis<|message|>x<|end|><|start|>assistant<|channel|>"
                           "final<|message|>y", set(), set())
    assert not any(c.startswith("<|") and c.endswith("|>") and c.count("|>") == 1 for c in harmony)


def test_script_may_not_contain_a_special_token() -> None:
    with pytest.raises(ValueError, match="special token"):
        build_scripted({USER_TURN: "oops<|im_end|>"}, chat_template=hermes_template())


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> ScriptedFiles:
    return write_scripted(tmp_path_factory.mktemp("scripted"),
                          {USER_TURN: TOOL_SCRIPT, TOOL_RESULT_TURN: FINAL_SCRIPT})


@pytest.fixture(scope="module")
def thinking(tmp_path_factory: pytest.TempPathFactory) -> ScriptedFiles:
    return write_scripted(tmp_path_factory.mktemp("thinking"), {USER_TURN: THINK_SCRIPT, "": "Hi."})


def _load(kind: str, files: ScriptedFiles) -> ChatModel:
    if kind == "llama_cpp":
        from app.providers.llama_cpp import LlamaCppProvider

        return LlamaCppProvider().load(LlamaCppProvider.row_for(str(files.gguf), n_ctx=16384))
    if kind == "mlx":
        from app.providers.mlx_lm import MlxProvider

        return MlxProvider().load(MlxProvider.row_for(str(files.hf)))
    from app.providers.hf_transformers import TransformersProvider

    return TransformersProvider().load(TransformersProvider.row_for(str(files.hf)))


RUNTIMES = ["llama_cpp", "mlx", "transformers"]


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param


async def _reply(model: ChatModel, messages: list[ChatMessage], **kw: Any) -> str:
    """The reply as the model wrote it (a reasoning block split out by the runtime put back)."""
    request = ChatRequest(messages=messages, temperature=0.0, max_tokens=200, **kw)
    chunks = [c async for c in model.stream(request)]
    whole = await model.complete(request)
    assert whole.finish_reason == "stop"
    assert "".join(c.text for c in chunks) == whole.text
    assert "".join(c.reasoning for c in chunks) == whole.reasoning
    return f"<think>{whole.reasoning}</think>{whole.text}" if whole.reasoning else whole.text


def _tool_round_trip() -> list[ChatMessage]:
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_time", "arguments": '{"city": "Paris"}'}}
    return [ChatMessage("user", "What time is it in Paris?"),
            ChatMessage("assistant", "Let me check.", tool_calls=(call,)),
            ChatMessage("tool", "12:00", tool_call_id="call_1")]


async def test_each_runtime_plays_the_scripts(runtime: str, scripted: ScriptedFiles,
                                              thinking: ScriptedFiles) -> None:
    model = _load(runtime, scripted)
    try:
        short = [ChatMessage("user", "What time is it in Paris?")]
        assert await _reply(model, short) == TOOL_SCRIPT
        assert await _reply(model, _tool_round_trip()) == FINAL_SCRIPT
        long = [ChatMessage("system", FILLER * 90), ChatMessage("user", "Go.")]
        assert (model.count_tokens(long) or 0) >= 5000
        assert await _reply(model, long) == TOOL_SCRIPT
    finally:
        await model.aclose()
    model = _load(runtime, thinking)
    try:
        assert await _reply(model, [ChatMessage("user", "hi")]) == THINK_SCRIPT
    finally:
        await model.aclose()


def test_catch_all_script_follows_any_raw_prompt(thinking: ScriptedFiles) -> None:
    from llama_cpp import Llama

    llm = Llama(model_path=str(thinking.gguf), n_ctx=512, verbose=False)
    try:
        out = llm.create_completion("any raw text at all", max_tokens=20, temperature=0.0)
        assert out["choices"][0]["text"] == "Hi."
        assert out["choices"][0]["finish_reason"] == "stop"
    finally:
        llm.close()


def test_files_are_small(scripted: ScriptedFiles) -> None:
    size = scripted.gguf.stat().st_size + sum(f.stat().st_size for f in Path(scripted.hf).iterdir())
    assert size < 8_000_000
