"""End to end through the official openai SDK: model "tater/hydra" on the tiny llama.cpp model."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer, start_live_server

importlib.import_module("llama_cpp")
importlib.import_module("openai")


@pytest.fixture
def hydra_server(clean_env: Path, tiny_gguf: Path) -> Iterator[LiveServer]:
    from app.providers.llama_cpp import LlamaCppProvider

    # n_ctx 4096: the doer's prompt (with the Verba's schema) is longer than the tiny model's 512.
    row = LlamaCppProvider.row_for(str(tiny_gguf), n_ctx=4096)
    live = start_live_server(clean_env, [row], row.id, hydra_tools_allowed=True,
                             verbas={"calculator": {"enabled": False}}, hydra={"max_steps": 1})
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]


def test_clock_call_through_the_sdk(hydra_server: LiveServer) -> None:
    client = hydra_server.client()
    messages = [{"role": "user", "content": "What time is it?"}]
    resp = client.chat.completions.create(model="tater/hydra", messages=messages, max_tokens=8,
                                          temperature=0, tool_choice="required")
    steps = resp.model_extra["tater"]["steps"]
    assert resp.model == hydra_server.settings.current.active_model  # the model that ran (issue 14)
    assert [s["verba"] for s in steps] == ["clock"]
    assert resp.model_extra["tater"]["llm_calls"] == 3
    assert resp.choices[0].finish_reason == "length" and resp.choices[0].message.content
    assert resp.usage.completion_tokens > 8  # planner + doer + composer

    hydra_server.settings.update(hydra_tools_allowed=False)
    plain = client.chat.completions.create(model="tater/hydra", messages=messages, max_tokens=8,
                                           temperature=0)
    assert plain.model_extra["tater"] == {"steps": [], "notes": [], "llm_calls": 1}
    assert plain.usage.completion_tokens == 8


def test_streamed_hydra_turn_has_progress_comments(hydra_server: LiveServer) -> None:
    import httpx

    body = {"model": "tater/hydra", "stream": True, "max_tokens": 8, "temperature": 0,
            "tool_choice": {"type": "function", "function": {"name": "clock"}},
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Time in Paris?"}]}
    with httpx.stream("POST", hydra_server.base_url + "/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {hydra_server.key}"}) as resp:
        lines = [line for line in resp.iter_lines() if line]
    assert resp.status_code == 200, lines
    assert ": Step 1: Clock…" in lines  # progress as SSE comments while the Verba runs
    chunks = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    texts = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert sum(1 for t in texts if t) >= 2  # the composer streamed token by token
    final = next(c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"])
    assert final["choices"][0]["finish_reason"] == "length"
    assert [s["verba"] for s in final["tater"]["steps"]] == ["clock"]
    assert final["tater"]["llm_calls"] == 2  # the named Verba skips the planner
    assert chunks[-1]["usage"]["completion_tokens"] > 8 and lines[-1] == "data: [DONE]"
