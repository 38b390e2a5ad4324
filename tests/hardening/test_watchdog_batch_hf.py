"""The watchdog covers the Hugging Face-format batch engines too: a Transformers or MLX batch step
stuck in the runtime fails every member with 503 ``model_stalled`` and the model is reloaded.

The wedge: the runtime's own forward pass of a batch step blocks (Transformers: the loaded
model's ``forward``, called by the manager's thread; MLX: mlx-lm's ``BatchGenerator.next``, on
the MLX thread) until the test releases it.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, start_live_server
from tests.hardening.conftest import post_chat

STEP = 1.0  # limits.token_timeout_seconds (its minimum)
SETTLE = 2 * STEP + 2.0  # a step of two short prompts is allowed a little over STEP
MODEL = "hf-wedge"


class Wedge:
    """Blocks the runtime call it wraps (on whatever thread runs it) until released."""

    def __init__(self) -> None:
        self.stuck = threading.Event()
        self.release = threading.Event()

    def wrap(self, call: Any) -> Any:
        def wedged(*args: Any, **kwargs: Any) -> Any:
            if not self.release.is_set():
                self.stuck.set()
                self.release.wait()
            return call(*args, **kwargs)

        return wedged


@pytest.fixture
def wedge() -> Iterator[Wedge]:
    w = Wedge()
    yield w
    w.release.set()


def server(clean_env: Path, row: Any) -> LiveServer:
    row = row.model_copy(update={"id": MODEL, "options": {**row.options, "parallel": 2}})
    return start_live_server(clean_env, [row], row.id, limits={"token_timeout_seconds": STEP})


def ask(live: LiveServer, prompt: str) -> httpx.Response:
    return post_chat(live, prompt, timeout=60, temperature=0)


def two_stuck_members(live: LiveServer, wedge: Wedge) -> None:
    """Two concurrent batched requests meet the wedged step; both get 503 model_stalled in time."""
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda i: ask(live, f"client {i} says hello"), range(2)))
    waited = time.monotonic() - started
    for r in replies:
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "model_stalled"
    assert wedge.stuck.is_set() and not wedge.release.is_set()  # still stuck in the runtime
    assert STEP <= waited < SETTLE, waited


def test_a_stuck_transformers_batch_step_fails_its_members_and_the_model_is_reloaded(
        clean_env: Path, tiny_hf_folder: Path, wedge: Wedge) -> None:
    from app.providers.hf_transformers import TransformersProvider

    live = server(clean_env, TransformersProvider.row_for(str(tiny_hf_folder), threads=1))
    try:
        hub = live.services.hub  # type: ignore[attr-defined]
        first = hub.load(MODEL).result(timeout=60)
        assert first.engine is not None
        net = first.engine.manager.model
        net.forward = wedge.wrap(net.forward)  # the manager's thread runs it in every batch step
        two_stuck_members(live, wedge)
        assert first.broken
        started = time.monotonic()
        ok = ask(live, "hello")  # the fresh instance (its own weights, its own manager)
        assert ok.status_code == 200, ok.text
        assert ok.json()["usage"]["completion_tokens"] == 3
        assert time.monotonic() - started < 30  # loading the tiny model and its manager
        assert hub.load(MODEL).result() is not first
    finally:
        wedge.release.set()
        live.services.shutdown()  # type: ignore[attr-defined]


def test_a_stuck_mlx_batch_step_fails_its_members_and_the_model_is_reloaded_once_mlx_is_free(
        clean_env: Path, tiny_hf_folder: Path, wedge: Wedge, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLX runs on one thread for the whole process: the stuck step holds it, so the fresh
    instance loads (and the next request is answered) only once the step returns."""
    from mlx_lm.generate import BatchGenerator

    from app.providers.mlx_lm import MlxProvider

    live = server(clean_env, MlxProvider.row_for(str(tiny_hf_folder)))
    try:
        hub = live.services.hub  # type: ignore[attr-defined]
        first = hub.load(MODEL).result(timeout=60)
        assert first.engine is not None
        monkeypatch.setattr(BatchGenerator, "next", wedge.wrap(BatchGenerator.next))
        two_stuck_members(live, wedge)
        assert first.broken
        wedge.release.set()  # MLX's thread is free again: the reload queued behind the step runs
        ok = ask(live, "hello")
        assert ok.status_code == 200, ok.text
        assert ok.json()["usage"]["completion_tokens"] == 3
        assert hub.load(MODEL).result() is not first
    finally:
        wedge.release.set()
        live.services.shutdown()  # type: ignore[attr-defined]
