"""The suite's one family of scripted models, for unit tests of logic *around* models.

Never proof that a runtime works: the runtimes are tested on tiny real models.  The family:

* :class:`ScriptedLocal` (provider ``scripted``): a blocking "runtime" behind
  :class:`LocalChatModel` (lock, worker thread, cancel flag) - the queue, the hub's loads and
  evictions, limits;
* :class:`ScriptedRemote` (provider ``scripted_remote``): a non-local model, as remote rows
  are, so it may run requests in parallel;
* :class:`ScriptedModel`: replays given outputs word by word and records every request (Hydra's
  turns; built directly, not through a provider).

The first two generate :func:`scripted_tokens` and record into :data:`SCRIPT`.  The providers
are registered in one place, the ``script`` fixture (tests/conftest.py), which also resets
:data:`SCRIPT`.  A row's ``source`` steers loading: ``fail…`` fails, ``slow…`` takes 0.3 s;
``options["n_ctx"]`` is the context length (default 64).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from app.providers.base import (
    ChatChunk,
    ChatMessage,
    ChatModel,
    ChatRequest,
    ModelLoadError,
    Provider,
    ProviderError,
    TextRequest,
    ToolCallDelta,
    Usage,
)
from app.providers.local import LocalChatModel
from app.settings import ModelRow

SCRIPTED = "scripted"
SCRIPTED_REMOTE = "scripted_remote"
EMBED_DIMS = 8
PROVIDER_PATHS = {SCRIPTED: f"{__name__}:ScriptedProvider",
                  SCRIPTED_REMOTE: f"{__name__}:ScriptedRemoteProvider"}


@dataclass
class Script:
    """What the scripted models do, and what they saw (shared with the test)."""

    delay: float = 0.01  # seconds per token
    loads: list[str] = field(default_factory=list)  # row ids, in load order
    started: list[str] = field(default_factory=list)  # the prompt of each generation, in start order
    token_times: dict[str, list[float]] = field(default_factory=dict)
    active: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        """Back to the defaults (between tests)."""
        self.__init__()  # type: ignore[misc]


SCRIPT = Script()


def scripted_tokens(prompt: str, request: ChatRequest) -> Iterator[ChatChunk]:
    """``boom`` raises at once, ``boom-later`` after two tokens; otherwise ``<prompt>-<i> ``
    tokens, one per :attr:`Script.delay`, until ``max_tokens`` (finish ``length``)."""
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
    """A blocking "runtime" driven through LocalChatModel; ``closed`` once unloaded."""

    provider = SCRIPTED

    def __init__(self, model_id: str, *, context_length: int | None = None) -> None:
        super().__init__(model_id, context_length=context_length)
        self.closed = False

    def generate(self, request: ChatRequest, cancelled: threading.Event) -> Iterator[ChatChunk]:
        for chunk in scripted_tokens(request.messages[-1].content, request):
            if cancelled.is_set():
                return
            yield chunk

    def count_tokens(self, messages: list[ChatMessage], tools: list | None = None) -> int:
        return sum(len(m.content.split()) + 1 for m in messages)

    def generate_text(self, request: TextRequest, cancelled: threading.Event) -> Iterator[ChatChunk]:
        chat = ChatRequest(messages=[ChatMessage("user", request.prompt)], max_tokens=request.max_tokens)
        for chunk in scripted_tokens(request.prompt, chat):
            if cancelled.is_set():
                return
            yield chunk

    def embed_texts(self, texts: list[str | list[int]]) -> tuple[list[list[float]], int]:
        """A fixed-size vector per input (its length and word count, padded)."""
        words = [t.split() if isinstance(t, str) else t for t in texts]
        return ([[float(len(t)), float(len(w))] + [0.0] * (EMBED_DIMS - 2)
                 for t, w in zip(texts, words, strict=True)],
                sum(len(w) + 1 for w in words))

    def close(self) -> None:
        self.closed = True


class ScriptedRemote(ChatModel):
    """A non-local model (as remote rows are): may run requests in parallel."""

    provider = SCRIPTED_REMOTE

    async def _stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        chunks = await asyncio.to_thread(
            lambda: list(scripted_tokens(request.messages[-1].content, request)))
        for chunk in chunks:
            yield chunk


def _load(row: ModelRow) -> None:
    SCRIPT.loads.append(row.id)
    if row.source.startswith("fail"):
        raise ModelLoadError(f"cannot load {row.source}")
    if row.source.startswith("slow"):
        time.sleep(0.3)


class ScriptedProvider(Provider):
    """Loads a :class:`ScriptedLocal`."""

    name = SCRIPTED
    label = "Scripted (tests)"

    def load(self, row: ModelRow) -> ChatModel:
        _load(row)
        return ScriptedLocal(row.id, context_length=int(row.options.get("n_ctx", 64)))


class ScriptedRemoteProvider(Provider):
    """Loads a :class:`ScriptedRemote` (not local: no memory budget, parallel requests)."""

    name = SCRIPTED_REMOTE
    label = "Scripted remote (tests)"
    local = False

    def load(self, row: ModelRow) -> ChatModel:
        _load(row)
        model = ScriptedRemote(row.id)
        model.parallelism = int(row.options.get("max_parallel", model.parallelism))
        return model


@dataclass
class Reply:
    """One output of a :class:`ScriptedModel`."""

    text: str = ""
    tool_calls: list[tuple[str, str]] | None = None  # (name, arguments JSON)
    finish_reason: str | None = None
    usage: Usage = field(default_factory=lambda: Usage(10, 2))
    delay: float = 0.0


class ScriptedModel(ChatModel):
    """A ChatModel that replays given outputs, word by word, and records every request."""

    provider = SCRIPTED

    def __init__(self, replies: list[Reply | str], *, native_tool_calls: bool = False) -> None:
        super().__init__("scripted::test")
        self.replies = [r if isinstance(r, Reply) else Reply(r) for r in replies]
        self.calls: list[ChatRequest] = []
        self.native_tool_calls = native_tool_calls

    async def _stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.calls.append(request)
        if not self.replies:
            raise ProviderError("the script has no more replies")
        reply = self.replies.pop(0)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        for piece in re.findall(r"\S+\s*|\s+", reply.text):
            yield ChatChunk(text=piece)
        if reply.tool_calls:
            yield ChatChunk(tool_calls=[ToolCallDelta(i, id=f"call_{i}", name=n, arguments=a)
                                        for i, (n, a) in enumerate(reply.tool_calls)])
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        yield ChatChunk(finish_reason=finish, usage=reply.usage)

    def system(self, n: int) -> str:
        """The system message text of call ``n``."""
        msgs = self.calls[n].messages
        return msgs[0].content if msgs and msgs[0].role == "system" else ""
