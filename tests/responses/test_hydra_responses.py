"""Hydra through the Responses API (official openai SDK, tiny llama.cpp model): the same agent
turn as chat completions, its step report in a ``tater`` field, progress as SSE comments."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, start_live_server


@pytest.fixture
def hydra_server(clean_env: Path, tiny_gguf: Path) -> Iterator[LiveServer]:
    from app.providers.llama_cpp import LlamaCppProvider

    row = LlamaCppProvider.row_for(str(tiny_gguf), n_ctx=4096)  # room for the doer's prompt
    live = start_live_server(clean_env, [row], row.id, hydra_tools_allowed=True,
                             verbas={"calculator": {"enabled": False}}, hydra={"max_steps": 1})
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]


def test_hydra_turn_through_responses(hydra_server: LiveServer) -> None:
    client = hydra_server.client()
    r = client.responses.create(model="tater/hydra", input="What time is it?", temperature=0,
                                max_output_tokens=8, tool_choice="required")
    assert r.model == hydra_server.settings.current.active_model  # the model that ran
    assert r.output[0].type == "message" and r.output_text
    assert [s["verba"] for s in r.model_extra["tater"]["steps"]] == ["clock"]
    assert r.status == "incomplete" and r.usage.output_tokens > 8  # planner + doer + composer
    follow = client.responses.create(model="tater/hydra", input="Thanks.", previous_response_id=r.id,
                                     temperature=0, max_output_tokens=4, tool_choice="none")
    assert follow.model_extra["tater"]["steps"] == [] and follow.usage.input_tokens > 0


def test_streamed_hydra_turn_has_progress_comments(hydra_server: LiveServer) -> None:
    body = {"model": "tater/hydra", "stream": True, "max_output_tokens": 8, "temperature": 0,
            "tool_choice": {"type": "function", "name": "clock"}, "input": "Time in Paris?"}
    with httpx.stream("POST", hydra_server.base_url + "/responses", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {hydra_server.key}"}) as resp:
        lines = [line for line in resp.iter_lines() if line]
    assert resp.status_code == 200, lines
    assert ": Step 1: Clock…" in lines
    events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert events[-1]["type"] == "response.incomplete"
    assert [s["verba"] for s in events[-1]["response"]["tater"]["steps"]] == ["clock"]
    assert sum(1 for e in events if e["type"] == "response.output_text.delta") >= 2
