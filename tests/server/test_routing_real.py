"""Routing and memory with real runtimes: rows of two providers, eviction, busy models, TTL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.providers.hf_transformers import TransformersProvider
from app.providers.llama_cpp import LlamaCppProvider
from tests.conftest import LiveServer, start_live_server

MSGS = [{"role": "user", "content": "Say something."}]


@pytest.fixture
def two_rows(clean_env: Path, tiny_gguf: Path, tiny_hf_folder: Path) -> Iterator[tuple[LiveServer, str, str]]:
    llama = LlamaCppProvider.row_for(str(tiny_gguf), n_ctx=4096)  # long enough to be caught generating
    hf = TransformersProvider.row_for(str(tiny_hf_folder))
    live = start_live_server(clean_env, [llama, hf], llama.id)
    yield live, llama.id, hf.id
    live.services.shutdown()


def ask(live: LiveServer, model: str, n: int = 6) -> tuple[str, str]:
    r = live.client().chat.completions.create(model=model, messages=MSGS, max_tokens=n, temperature=0)
    return r.model, r.choices[0].message.content


def test_two_providers_side_by_side_answer_as_themselves(two_rows) -> None:
    live, llama_id, hf_id = two_rows
    live.settings.update(memory={"max_loaded_models": 2, "idle_unload_minutes": 30})
    llama_model, llama_text = ask(live, llama_id)
    hf_model, hf_text = ask(live, hf_id)
    assert (llama_model, hf_model) == (llama_id, hf_id)
    assert llama_text != hf_text
    assert set(live.services.hub.loaded_ids()) == {llama_id, hf_id}
    assert ask(live, llama_id) == (llama_model, llama_text)  # still itself, still loaded
    listed = {m.id: m.owned_by for m in live.client().models.list()}
    assert listed[llama_id] == "llama_cpp" and listed[hf_id] == "hf_transformers"


def test_budget_of_one_evicts_the_first(two_rows) -> None:
    live, llama_id, hf_id = two_rows
    ask(live, llama_id)
    assert live.services.hub.loaded_ids() == [llama_id]
    ask(live, hf_id)
    assert live.services.hub.loaded_ids() == [hf_id]


def test_a_model_mid_generation_is_never_evicted(two_rows) -> None:
    live, llama_id, hf_id = two_rows
    hub = live.services.hub
    ask(live, hf_id, n=1)  # warm torch so the reload below is quick
    body = {"model": llama_id, "messages": MSGS, "stream": True, "temperature": 0}
    with httpx.stream("POST", live.base_url + "/chat/completions", json=body,
                      headers={"X-API-Key": live.key}, timeout=60) as r:
        lines = r.iter_lines()
        next(lines)
        llama = hub.load(llama_id).result()
        assert llama.busy
        ask(live, hf_id, n=2)  # needs room, but the llama model is generating
        assert llama_id in hub.loaded_ids() and llama.busy
    deadline = time.monotonic() + 2
    while llama.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    ask(live, hf_id, n=1)  # now the idle llama model may go
    assert hub.loaded_ids() == [hf_id]


def test_idle_model_unloads_after_the_ttl(two_rows) -> None:
    live, llama_id, _ = two_rows
    live.settings.update(memory={"max_loaded_models": 1, "idle_unload_minutes": 0.01})  # 0.6 s
    live.services.hub.start_janitor(interval=0.1)
    ask(live, llama_id)
    assert live.services.hub.loaded_ids() == [llama_id]
    deadline = time.monotonic() + 5
    while live.services.hub.loaded_ids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live.services.hub.loaded_ids() == []
    assert ask(live, llama_id)[1]  # and it loads again on demand


def test_always_use_active_model_restores_the_original_routing(two_rows) -> None:
    live, llama_id, hf_id = two_rows
    live.settings.update(always_use_active_model=True)
    model, _ = ask(live, hf_id)
    assert model == llama_id
    assert live.services.hub.loaded_ids() == [llama_id]
