"""The hub's logic: one load per model, LRU within budget, busy never evicted, TTL, failures."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.model_hub import ModelHub, ModelNotConfigured
from app.providers.base import ChatMessage, ChatRequest, ModelLoadError
from app.settings import ModelRow, SettingsStore
from tests.fakes import SCRIPT, SCRIPTED, Script


@pytest.fixture
def hub(clean_env: Path, script: Script) -> Iterator[tuple[ModelHub, SettingsStore, list]]:
    store = SettingsStore(clean_env, env={})
    rows = [ModelRow(id=f"scripted::{n}", provider=SCRIPTED, source=n)
            for n in ("a", "b", "slow-c", "fail-d")]
    store.update(models=rows)
    h = ModelHub(store)
    events: list = []
    h.subscribe(events.append)
    yield h, store, events
    h.close()


def req(text: str) -> ChatRequest:
    return ChatRequest(messages=[ChatMessage("user", text)])


def test_concurrent_first_requests_share_one_load(hub) -> None:
    h, _, events = hub

    async def main() -> list:
        return await asyncio.gather(*(h.acquire("scripted::slow-c") for _ in range(10)))

    models = asyncio.run(main())
    assert len({id(m) for m in models}) == 1
    assert SCRIPT.loads == ["scripted::slow-c"]
    assert [e.kind for e in events] == ["loading", "loaded"]


def test_budget_evicts_least_recently_used(hub) -> None:
    h, store, events = hub
    store.update(memory={"max_loaded_models": 2, "idle_unload_minutes": 30})
    a = h.load("scripted::a").result()
    h.load("scripted::b").result()
    h.load("scripted::a").result()  # a is now the most recent
    h.load("scripted::slow-c").result()
    assert set(h.loaded_ids()) == {"scripted::a", "scripted::slow-c"}
    assert not a.closed
    assert any(e.kind == "unloaded" and e.model_id == "scripted::b" for e in events)


def test_a_generating_model_is_never_evicted(hub) -> None:
    h, _, _ = hub  # budget 1

    async def main() -> None:
        a = await h.acquire("scripted::a")
        stream = a.stream(req("one two three four five six seven eight"))
        await anext(stream)  # generating now
        await h.acquire("scripted::b")
        assert "scripted::a" in h.loaded_ids(), "busy model evicted"
        assert a.busy
        await stream.aclose()
        assert not a.busy
        await h.acquire("scripted::slow-c")
        assert "scripted::a" not in h.loaded_ids()

    asyncio.run(main())


def test_idle_models_unload_after_ttl(hub) -> None:
    h, store, _ = hub
    now = [1000.0]
    h._clock = lambda: now[0]
    store.update(memory={"max_loaded_models": 3, "idle_unload_minutes": 1})
    h.load("scripted::a").result()
    now[0] += 30
    h.load("scripted::b").result()
    now[0] += 40  # a idle 70 s, b idle 40 s
    assert h.unload_idle() == ["scripted::a"]
    store.update(memory={"max_loaded_models": 3, "idle_unload_minutes": 0})
    now[0] += 10_000
    assert h.unload_idle() == []  # 0 = never


def test_failed_load_reports_and_leaves_the_hub_usable(hub) -> None:
    h, _, events = hub
    with pytest.raises(ModelLoadError, match="cannot load fail-d"):
        h.load("scripted::fail-d").result()
    assert events[-1].kind == "failed" and "fail-d" in events[-1].message
    assert h.load("scripted::a").result().model_id == "scripted::a"
    with pytest.raises(ModelNotConfigured):
        h.load("nope")


def test_unknown_provider_is_a_load_error(hub) -> None:
    h, store, _ = hub
    store.update(models=[*store.current.models, ModelRow(id="x", provider="warp_drive", source="s")])
    with pytest.raises(ModelLoadError, match="unknown provider 'warp_drive'"):
        h.load("x").result()
