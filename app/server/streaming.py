"""Streamed responses: start the stream first (so early errors keep their HTTP status), then frame
it as SSE with one shared ending: the protocol's last event (OpenAI's ``[DONE]`` by default;
Anthropic's streams end with their own ``message_stop``), an error event for a mid-stream failure,
the request log told how it went, and the provider stream closed however the client left."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from quart import Response, g

from app.providers.base import ChatChunk, ProviderError, Usage
from app.server.errors import ApiError, from_provider_error
from app.server.serving import ProgressNote, ReplyExtension
from app.server.sse import DONE, SSE_HEADERS, comment, event
from app.server.tracking import current_tracker


@dataclass
class StreamTotals:
    """What a framer learned while streaming (the request log records it)."""

    usage: Usage = field(default_factory=Usage)
    status: int = 200
    """The status the request log records when the stream ends normally (a framer that reports a
    failure in its own protocol, as Responses does, sets it)."""


Framer = Callable[[AsyncIterator[Any], StreamTotals], AsyncIterator[bytes]]
"""Turns provider items into SSE events (without the final ``[DONE]``)."""

ErrorEvent = Callable[[ApiError], bytes]
"""Frames a mid-stream failure as the protocol's error event."""

_NOTHING = object()


def openai_error_event(err: ApiError) -> bytes:
    """OpenAI streams report a late failure as a ``data:`` event holding the error envelope."""
    return event(err.body())


async def sse_response(items: AsyncIterator[Any], frame: Framer, done: bytes = DONE, *,
                       error_event: ErrorEvent = openai_error_event) -> Response:
    """Pull the first item now (a failure here is a normal error response), then stream.

    ``done`` ends the stream, also after an error event (Chat Completions' ``[DONE]``; empty for
    protocols without one) and ``error_event`` frames a failure after the first byte."""
    try:
        first = await anext(items)
    except StopAsyncIteration:
        first = _NOTHING
    except BaseException:
        await items.aclose()  # type: ignore[attr-defined]
        raise
    tracker = current_tracker()
    totals = StreamTotals()
    body = coalesced(_guarded(frame(_replay(first, items, tracker), totals), items, totals, tracker,
                              done, error_event))
    response = Response(body, status=200, content_type="text/event-stream; charset=utf-8",
                        headers=SSE_HEADERS)
    response.timeout = None
    g.streaming = True
    return response


async def coalesced(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Send each event as soon as it exists, but join the ones that piled up while the previous
    write was in flight into one write (a slow socket or a fast model costs one write, not N)."""
    pending: list[bytes] = []
    ready = asyncio.Event()
    finished = False

    async def pump() -> None:
        nonlocal finished
        try:
            async for chunk in events:
                pending.append(chunk)
                ready.set()
        finally:
            finished = True
            ready.set()

    task = asyncio.create_task(pump(), name="sse-pump")
    try:
        while True:
            if pending:
                data = b"".join(pending)
                pending.clear()
                yield data
            elif finished:
                break
            else:  # nothing between the check and the wait can run: no wake-up is lost
                ready.clear()
                await ready.wait()
        await task  # surfaces a failure of the producer
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await events.aclose()  # type: ignore[attr-defined]


async def _replay(first: Any, rest: AsyncIterator[Any], tracker: Any) -> AsyncIterator[Any]:
    """``first`` then the rest; the request log notes when the first generated text or tool call
    passes (queue and prefill included, Hydra's progress lines not)."""
    waiting = tracker is not None
    if first is not _NOTHING:
        if waiting and _generated(first):
            tracker.first_token()
            waiting = False
        yield first
    async for item in rest:
        if waiting and _generated(item):
            tracker.first_token()
            waiting = False
        yield item


def _generated(item: Any) -> bool:
    """A chunk (or a ``(choice index, chunk)`` pair) that carries generated text or a tool call."""
    chunk = item[-1] if isinstance(item, tuple) and item else item
    return bool(getattr(chunk, "text", None) or getattr(chunk, "tool_calls", None))


async def _guarded(events: AsyncIterator[bytes], items: AsyncIterator[Any], totals: StreamTotals,
                   tracker: Any, done: bytes, error_event: ErrorEvent) -> AsyncIterator[bytes]:
    try:
        async for chunk in events:
            yield chunk
        if done:
            yield done
        if tracker:
            tracker.finish(totals.status, totals.usage)
    except ProviderError as exc:
        err = from_provider_error(exc)
        yield error_event(err)
        if done:
            yield done
        if tracker:
            tracker.finish(err.status, totals.usage, error=err.message)
    finally:
        if tracker:
            tracker.finish(499, totals.usage)  # no-op when already finished: the client went away
        await events.aclose()  # type: ignore[attr-defined]
        await items.aclose()  # type: ignore[attr-defined]


async def chunks_and_notes(items: AsyncIterator[Any],
                           extension: dict[str, Any]) -> AsyncIterator[ChatChunk | bytes]:
    """A turn's items for a framer: its chunks; each progress note as an SSE comment (bytes, to
    send as they are); reply-extension fields folded into ``extension``."""
    async for item in items:
        if isinstance(item, ProgressNote):
            yield comment(item.text)
        elif isinstance(item, ReplyExtension):
            extension.update(item.fields)
        else:
            yield item
