"""Fixtures for the hardening suite: a scripted model (for queue/disconnect logic) on the real server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app import providers
from app.providers.base import ChatChunk, ChatMessage, ChatModel, ChatRequest, Provider, TextRequest, Usage
from app.providers.local import LocalChatModel
from app.settings import ModelRow
from tests.conftest import LiveServer, start_live_server

SCRIPTED = "hardening_scripted"
SCRIPTED_REMOTE = "hardening_scripted_remote"
EMBED_DIMS = 8


@dataclass
class Script:
    """What the scripted models do, and what they saw (shared with the test)."""

    delay: float = 0.01
    started: list[str] = field(default_factory=list)  # the prompt of each generation, in start order
    token_times: dict[str, list[float]] = field(default_factory=dict)
    active: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


SCRIPT = Script()


def _tokens(prompt: str, request: ChatRequest) -> Iterator[ChatChunk]:
    """``boom`` raises at once, ``boom-later`` after two tokens; otherwise echo numbered tokens."""
    limit = request.max_tokens or 1_000_000
    with SCRIPT.lock:
        SCRIPT.started.append(prompt)
        SCRIPT.active += 1
        SCRIPT.peak = max(SCRIPT.peak, SCRIPT.active)
        times = SCRIPT.token_times.setdefault(prompt, [])
    try:
        if prompt == "boom":
            raise RuntimeError("scripted failure")
        for i in range(limit):
            if prompt == "boom-later" and i == 2:
                raise RuntimeError("scripted failure mid-stream")
            time.sleep(SCRIPT.delay)
            times.append(time.perf_counter())
            yield ChatChunk(text=f"{prompt}-{i} ")
        yield ChatChunk(finish_reason="length", usage=Usage(1, limit))
    finally:
        with SCRIPT.lock:
            SCRIPT.active -= 1


class ScriptedLocal(LocalChatModel):
    """A blocking "runtime" driven through LocalChatModel (lock + worker thread + cancel flag)."""

    provider = SCRIPTED

    def generate(self, request: ChatRequest, cancelled: threading.Event) -> Iterator[ChatChunk]:
        for chunk in _tokens(request.messages[-1].content, request):
            if cancelled.is_set():
                return
            yield chunk

    def count_tokens(self, messages: list, tools: list | None = None) -> int:
        return sum(len(m.content.split()) + 1 for m in messages)

    def generate_text(self, request: TextRequest, cancelled: threading.Event) -> Iterator[ChatChunk]:
        chat = ChatRequest(messages=[ChatMessage("user", request.prompt)], max_tokens=request.max_tokens)
        for chunk in _tokens(request.prompt, chat):
            if cancelled.is_set():
                return
            yield chunk

    def embed_texts(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """A fixed-size vector per text (its length and word count, padded)."""
        return [[float(len(t)), float(len(t.split()))] + [0.0] * (EMBED_DIMS - 2) for t in texts], \
            sum(len(t.split()) + 1 for t in texts)


class ScriptedRemote(ChatModel):
    """A non-local model (as remote rows are): may run requests in parallel."""

    provider = SCRIPTED_REMOTE

    async def _stream(self, request: ChatRequest):
        import asyncio

        for chunk in await asyncio.to_thread(lambda: list(_tokens(request.messages[-1].content,
                                                                  request))):
            yield chunk


class ScriptedProvider(Provider):
    name = SCRIPTED
    label = "Scripted (hardening tests)"

    def load(self, row: ModelRow) -> ChatModel:
        return ScriptedLocal(row.id, context_length=int(row.options.get("n_ctx", 64)))


class ScriptedRemoteProvider(Provider):
    name = SCRIPTED_REMOTE
    label = "Scripted remote (hardening tests)"
    local = False

    def load(self, row: ModelRow) -> ChatModel:
        model = ScriptedRemote(row.id)
        model.parallelism = int(row.options.get("max_parallel", model.parallelism))
        return model


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Iterator[Script]:
    """Register the scripted providers (restored afterwards) and reset what they recorded."""
    monkeypatch.setitem(providers.PROVIDER_PATHS, SCRIPTED, f"{__name__}:ScriptedProvider")
    monkeypatch.setitem(providers.PROVIDER_PATHS, SCRIPTED_REMOTE, f"{__name__}:ScriptedRemoteProvider")
    SCRIPT.__init__()  # type: ignore[misc]
    yield SCRIPT


@pytest.fixture
def scripted_server(clean_env: Path, script: Script) -> Iterator[LiveServer]:
    """The real server whose active model is the scripted local model; a remote one is row 2."""
    rows = [ModelRow(id="scripted::local", provider=SCRIPTED, source="-"),
            ModelRow(id="scripted::remote", provider=SCRIPTED_REMOTE, source="-",
                     options={"max_parallel": 3})]
    live = start_live_server(clean_env, rows, "scripted::local")
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]


def chat_body(prompt: str, **kw: object) -> dict:
    return {"messages": [{"role": "user", "content": prompt}], **kw}


def auth(live: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.key}"}
