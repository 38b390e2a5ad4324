"""Hydra on a real runtime: the tiny random-weight GGUF, grammar-constrained by llama.cpp."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.hydra import HydraAgent, Origin
from app.providers.base import ChatMessage, ChatModel, ChatRequest, ChatResult
from app.settings import SettingsStore
from app.verbas import VerbaRegistry

importlib.import_module("llama_cpp")


@pytest.fixture(scope="module")
def tiny_llama(tiny_gguf: Path) -> Iterator[ChatModel]:
    from app.providers.llama_cpp import LlamaCppProvider

    # The doer's prompt carries the Verba's schema: more than the tiny model's 512 tokens.
    model = LlamaCppProvider().load(LlamaCppProvider.row_for(str(tiny_gguf), n_ctx=4096))
    yield model
    model.close()


class Recorder:
    """Wraps a model's ``complete`` to keep every internal request and result."""

    def __init__(self, model: ChatModel, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[tuple[ChatRequest, ChatResult]] = []
        original = model.complete

        async def complete(request: ChatRequest) -> ChatResult:
            result = await original(request)
            self.seen.append((request, result))
            return result

        monkeypatch.setattr(model, "complete", complete)


async def test_grammar_makes_a_valid_clock_call(tiny_llama: ChatModel, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store = SettingsStore(tmp_path, env={})
    store.update(hydra_tools_allowed=True, verbas={"calculator": {"enabled": False}},
                 hydra={"max_steps": 1})
    rec = Recorder(tiny_llama, monkeypatch)
    agent = HydraAgent(store, VerbaRegistry.discover(None, entry_points=False))
    request = ChatRequest([ChatMessage("user", "What time is it?")], max_tokens=8,
                          temperature=0.0, tool_choice="required")
    result, report = await agent.complete(tiny_llama, request, Origin("s"))
    planner, doer = (json.loads(r.text) for _, r in rec.seen)  # both grammar-valid JSON
    assert planner["action"] == "use_tools" and planner["steps"][0]["verba"] == "clock"
    assert doer["verba"] == "clock" and set(doer["arguments"]) <= {"timezone"}
    assert [s.verba for s in report.steps] == ["clock"]  # the Verba ran (a random zone may fail)
    assert report.llm_calls == 3 and result.finish_reason == "length"  # max_tokens=8
    internal = sum(r.usage.completion_tokens for _, r in rec.seen)
    assert result.usage.completion_tokens == internal + 8  # + the streamed composer's 8
    assert result.usage.prompt_tokens > sum(r.usage.prompt_tokens for _, r in rec.seen)


async def test_tools_disallowed_makes_no_call(tiny_llama: ChatModel, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    store = SettingsStore(tmp_path, env={})
    rec = Recorder(tiny_llama, monkeypatch)
    agent = HydraAgent(store, VerbaRegistry.discover(None, entry_points=False))
    request = ChatRequest([ChatMessage("user", "What time is it?")], max_tokens=8, temperature=0.0)
    result, report = await agent.complete(tiny_llama, request, Origin("s"))
    assert rec.seen == [] and report.steps == [] and report.llm_calls == 1  # composer only
    assert result.text and result.usage.completion_tokens == 8


async def test_native_tool_calling_with_named_tool_choice(tiny_llama: ChatModel, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """tool_protocol "native": the doer gets tools + a named tool_choice (llama.cpp grammar)."""
    store = SettingsStore(tmp_path, env={})
    store.update(hydra_tools_allowed=True, hydra={"tool_protocol": "native"})
    rec = Recorder(tiny_llama, monkeypatch)
    agent = HydraAgent(store, VerbaRegistry.discover(None, entry_points=False))
    request = ChatRequest([ChatMessage("user", "2+2?")], max_tokens=4, temperature=0.0,
                          tool_choice={"type": "function", "function": {"name": "calculator"}})
    _, report = await agent.complete(tiny_llama, request, Origin("s"))
    (doer_req, doer), *_ = rec.seen
    assert doer_req.tool_choice == {"type": "function", "function": {"name": "calculator"}}
    assert doer_req.response_format is None and doer.finish_reason == "tool_calls"
    assert doer.tool_calls[0]["function"]["name"] == "calculator"
    assert report.steps and report.steps[0].verba == "calculator"
