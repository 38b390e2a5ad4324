"""Scripted stand-ins for unit tests of logic *around* models (never proof that a runtime works)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from app.providers.base import ChatChunk, ChatRequest, ModelLoadError, Provider, Usage
from app.providers.local import LocalChatModel
from app.settings import ModelRow

LOADS: list[str] = []


class EchoModel(LocalChatModel):
    """Streams the last user message back word by word, ``delay`` seconds per word."""

    provider = "scripted"

    def __init__(self, model_id: str, delay: float) -> None:
        super().__init__(model_id, context_length=4096)
        self.delay = delay
        self.closed = False

    def generate(self, request: ChatRequest, cancelled: threading.Event) -> Iterator[ChatChunk]:
        words = request.messages[-1].content.split()
        limit = request.max_tokens or len(words)
        for w in words[:limit]:
            if cancelled.is_set():
                return
            time.sleep(self.delay)
            yield ChatChunk(text=w + " ")
        yield ChatChunk(
            finish_reason="length" if limit < len(words) else "stop",
            usage=Usage(len(request.messages), min(limit, len(words))),
        )

    def close(self) -> None:
        self.closed = True


class ScriptedProvider(Provider):
    """Loads an EchoModel; a source starting with ``fail`` fails to load; ``slow`` loads in 0.3 s."""

    name = "scripted"
    label = "Scripted (tests)"

    def load(self, row: ModelRow) -> EchoModel:
        LOADS.append(row.id)
        if row.source.startswith("fail"):
            raise ModelLoadError(f"cannot load {row.source}")
        if row.source.startswith("slow"):
            time.sleep(0.3)
        return EchoModel(row.id, float(row.options.get("delay", 0.0)))
