"""Client-side helpers shared by the batching tests of every runtime (real server, openai SDK).

Prompts, one streamed reply as (text, usage, finish), a watch on how many members shared the
engine's batch, a JSON-schema-constrained request and the prefix-cache prompts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from tests.conftest import LiveServer

Reply = tuple[str, Any, str]

SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"},
                                           "word": {"enum": ["yes", "no", "maybe"]}},
          "required": ["ok", "word"], "additionalProperties": False}

LONG_A = [{"role": "system", "content": "Project notes: " + " ".join(f"alpha{i}" for i in range(40))},
          {"role": "user", "content": "first question"}]
LONG_B = [{"role": "system", "content": "Other notes: " + " ".join(f"beta{i}" for i in range(40))},
          {"role": "user", "content": "second question"}]


def ask(i: int, words: int = 6) -> list[dict[str, str]]:
    """Client ``i``'s prompt: different per client, the same length."""
    return [{"role": "user", "content": f"client {i} says " + " ".join(["hello"] * words) + f" {i}"}]


def stream(live: LiveServer, messages: list[dict[str, str]], max_tokens: int, *,
           model: str = "tater/direct", **extra: Any) -> Reply:
    """Text, usage and finish reason of one streamed reply (temperature 0 unless given)."""
    extra.setdefault("temperature", 0)
    chunks = live.client().chat.completions.create(
        model=model, messages=messages, max_tokens=max_tokens, stream=True,
        stream_options={"include_usage": True}, **extra)
    text, usage, finish = [], None, ""
    for chunk in chunks:
        if chunk.choices:
            text.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    return "".join(text), usage, finish


def constrained(live: LiveServer, messages: list[dict[str, str]], *, model: str = "tater/direct") -> str:
    """The reply to a request held to :data:`SCHEMA` by ``response_format``."""
    resp = live.client().chat.completions.create(
        model=model, messages=messages, max_tokens=60, temperature=0,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "flag", "schema": SCHEMA, "strict": True}})
    return resp.choices[0].message.content or ""


def assert_fits_schema(reply: str) -> None:
    value = json.loads(reply)
    assert set(value) == {"ok", "word"} and isinstance(value["ok"], bool)
    assert value["word"] in ("yes", "no", "maybe")


def assert_same_replies(alone: Sequence[Reply], together: Sequence[Reply], max_tokens: int) -> None:
    """Each batched reply is the one its request got alone: text, length, prompt size."""
    for (text, usage, finish), (ctext, cusage, cfinish) in zip(alone, together, strict=True):
        assert text and ctext == text
        assert finish == cfinish == "length"
        assert usage.completion_tokens == cusage.completion_tokens == max_tokens
        assert usage.prompt_tokens == cusage.prompt_tokens


def cached(live: LiveServer, messages: list[dict[str, str]], *,
           model: str = "tater/direct") -> tuple[int, int]:
    """(prompt tokens, cached prompt tokens) of a short reply to ``messages``."""
    resp = live.client().chat.completions.create(model=model, messages=messages,
                                                 max_tokens=4, temperature=0)
    return resp.usage.prompt_tokens, resp.usage.prompt_tokens_details.cached_tokens


def loaded_model(live: LiveServer, row_id: str | None = None) -> Any:
    """The hub's loaded model of ``row_id`` (default: the active row)."""
    row_id = row_id or live.settings.current.active_model
    return live.services.hub.load(row_id).result(timeout=60)  # type: ignore[attr-defined]


def wait_until(predicate: Callable[[], bool], timeout: float = 10) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.0005)
    return bool(predicate())


class BatchWatch:
    """Samples the engine's member count while a test runs: the most members seen at once."""

    def __init__(self, model: Any) -> None:
        self.engine = model.engine
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.most = max(self.most, self.engine.active())
            time.sleep(0.0005)

    def __enter__(self) -> BatchWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
