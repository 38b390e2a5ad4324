"""Per-model FIFO admission: bounded queues, fair order, nothing runs for a client that left.

Every generation takes a *slot* on its model's queue first; a model has as many slots as its
``parallelism`` says.  A local model has its batch engine's slot count (llama.cpp and MLX
rows' ``parallel`` option), else one (the runtime serialises anyway; queueing here keeps the
order fair and the waiting bounded, instead of piling threads onto the model's lock).  Remote
rows have several (``options.max_parallel``, default ``DEFAULT_PARALLELISM``): the upstream
server batches.  When ``limits.queue_depth`` requests already wait, the next one is refused at
once with 503 and ``Retry-After`` (never a hang).

A waiter whose client disconnects is cancelled by Quart (the handler task is cancelled) and
leaves the queue before it runs.  A streamed reply keeps its slot until the stream ends or the
client goes away (:class:`HeldStream`).  All of this runs on the server's event loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from app.providers.base import ChatChunk, ChatModel, ProviderError
from app.server.errors import ApiError


@dataclass(frozen=True)
class QueueStats:
    """A queue's state for the UI and tests."""

    running: int
    waiting: int
    slots: int
    served: int
    rejected: int


class ModelQueue:
    """FIFO slots for one model."""

    def __init__(self, model_id: str, slots: int) -> None:
        self.model_id = model_id
        self.slots = max(1, slots)
        self.running = 0
        self.served = 0
        self.rejected = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._avg_seconds = 2.0  # moving average of how long a slot is held

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    def stats(self) -> QueueStats:
        return QueueStats(self.running, self.waiting, self.slots, self.served, self.rejected)

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the queue ahead of it, at the recent pace."""
        ahead = self.running + self.waiting
        return max(1, min(600, math.ceil(self._avg_seconds * ahead / self.slots)))

    async def acquire(self, depth: int) -> Ticket:
        """Wait for a slot in arrival order; 503 when ``depth`` requests already wait."""
        if self.running < self.slots and not self.waiting:
            self.running += 1
            return Ticket(self)
        if self.waiting >= depth:
            self.rejected += 1
            raise ApiError(503, f"The model '{self.model_id}' is busy: {self.running} request(s) are "
                           f"running and {self.waiting} waiting (the queue holds {depth}). Retry "
                           "shortly.", code="queue_full", error_type="server_error",
                           headers={"Retry-After": str(self.retry_after())})
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # we were handed the slot just as we gave up: pass it on
            else:
                waiter.cancel()
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
        return Ticket(self)

    def _release_slot(self) -> None:
        """Hand the slot to the oldest live waiter, or free it."""
        while self._waiters:
            nxt = self._waiters.popleft()
            if not nxt.done():
                nxt.set_result(None)  # the slot passes on; ``running`` is unchanged
                return
        self.running -= 1

    def _finished(self, seconds: float) -> None:
        self.served += 1
        self._avg_seconds = 0.8 * self._avg_seconds + 0.2 * seconds
        self._release_slot()


class Ticket:
    """A held slot.  Release exactly once (``async with``, :meth:`hold`, or :meth:`release`)."""

    def __init__(self, queue: ModelQueue) -> None:
        self._queue = queue
        self._t0 = time.perf_counter()
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._queue._finished(time.perf_counter() - self._t0)

    async def __aenter__(self) -> Ticket:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.release()

    def hold(self, chunks: AsyncIterator[ChatChunk]) -> HeldStream:
        """Keep the slot while ``chunks`` streams; release it when the stream ends or closes."""
        return HeldStream(self, chunks)


class HeldStream:
    """An async iterator over a model's chunks that owns a :class:`Ticket`.

    The slot is released when the stream is exhausted, fails or is closed (the SSE writer
    closes it when the client goes away).  A runtime failure that is not a ProviderError
    becomes one (500), so a stream that breaks mid-way still ends with an error event.
    """

    def __init__(self, ticket: Ticket, chunks: AsyncIterator[ChatChunk]) -> None:
        self._ticket = ticket
        self._chunks = chunks
        self._loop = asyncio.get_running_loop()

    def __aiter__(self) -> HeldStream:
        return self

    async def __anext__(self) -> ChatChunk:
        try:
            return await anext(self._chunks)
        except StopAsyncIteration:
            await self.aclose()
            raise
        except (ProviderError, asyncio.CancelledError, GeneratorExit):
            await self.aclose()
            raise
        except Exception as exc:
            await self.aclose()
            raise as_provider_error(exc) from exc

    async def aclose(self) -> None:
        try:
            aclose: Callable[[], Any] | None = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            self._ticket.release()

    def __del__(self) -> None:  # a response body that was never iterated must not keep the slot
        if not self._ticket.released and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._ticket.release)


def as_provider_error(exc: BaseException) -> ProviderError:
    """An unexpected runtime exception as a 500 the client can read."""
    return ProviderError(f"The model failed while generating: {type(exc).__name__}: {exc}",
                         code="generation_failed")


class ModelQueues:
    """One :class:`ModelQueue` per model id, created on first use."""

    def __init__(self, depth: Callable[[], int]) -> None:
        self._depth = depth
        self._queues: dict[str, ModelQueue] = {}

    def queue(self, model_id: str, slots: int) -> ModelQueue:
        q = self._queues.get(model_id)
        if q is None:
            q = self._queues[model_id] = ModelQueue(model_id, slots)
        elif q.slots != slots and not q.running and not q.waiting:
            q.slots = max(1, slots)  # the model was reloaded with another parallelism: apply when idle
        return q

    async def admit(self, model_id: str, model: ChatModel) -> Ticket:
        """Wait for a slot on ``model_id`` (FIFO, ``model.parallelism`` slots); 503 when full."""
        return await self.queue(model_id, model.parallelism).acquire(self._depth())

    def stats(self) -> dict[str, QueueStats]:
        """Running/waiting counts per model id."""
        return {k: q.stats() for k, q in self._queues.items()}

    def idle(self) -> bool:
        """True when nothing runs or waits on any model."""
        return all(q.running == 0 and q.waiting == 0 for q in self._queues.values())

