"""Blocking runtimes (llama.cpp, MLX, Transformers) behind the async :class:`ChatModel` interface.

A :class:`LocalChatModel` writes a plain generator; calls are serialised with a lock (llama.cpp
aborts the process when two threads use one model), run on a worker thread, and ``cancelled`` is
set when the consumer stops reading, so a generation ends within a token of a client hanging up.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from app.providers.base import (
    Accumulator,
    ChatChunk,
    ChatModel,
    ChatRequest,
    ChatResult,
    ProviderError,
    TextRequest,
    UnsupportedError,
)
from app.providers.owner_thread import OwnerThread

IDLE_WORKER_EXIT = 60.0
"""Seconds a model's worker thread waits for work before it ends (the next request restarts it)."""


class LocalChatModel(ChatModel):
    """A model driven by a blocking runtime: implement :meth:`generate` as a generator.

    Calls are serialised with a lock (llama.cpp aborts the process when two threads use one
    model) and run in arrival order on the model's own worker thread (kept while the model is
    loaded: starting a thread per request costs more than a token of a small model);
    ``cancelled`` is set when the consumer stops reading, so a generation ends within a token of
    a client hanging up.
    """

    def __init__(self, model_id: str, *, context_length: int | None = None) -> None:
        super().__init__(model_id, context_length=context_length)
        self.lock = threading.Lock()
        self.worker = OwnerThread(f"tater-model {model_id}", idle_exit=IDLE_WORKER_EXIT)

    @abstractmethod
    def generate(self, request: ChatRequest, cancelled: threading.Event) -> Iterator[ChatChunk]:
        """Blocking generator; check ``cancelled`` between tokens and return when it is set."""

    def close(self) -> None:
        """Free runtime memory (called on a worker thread)."""

    def spawn(self, job: Callable[[], None]) -> None:
        """Queue ``job`` on the model's worker thread; MLX overrides it (one thread for all)."""
        self.worker.spawn(job)

    async def aclose(self) -> None:
        await run_to_end(self.lock, lambda _cancelled: self.close(), spawn=self.spawn)
        self.worker.stop()

    def _close_locked(self) -> None:
        with self.lock:
            self.close()
        self.worker.stop()

    async def complete(self, request: ChatRequest) -> ChatResult:
        """The whole reply, generated and accumulated on the worker thread in one go.

        The same chunks as :meth:`stream`, without a thread hand-off per token (which costs
        more than a token of a small model); cancelling the caller stops it between tokens.
        """
        def work(cancelled: threading.Event) -> ChatResult:
            acc = Accumulator()
            for chunk in self.generate(request, cancelled):
                acc.add(chunk)
            return acc.result(request)

        with self._active_lock:
            self._active += 1
        try:
            return await run_to_end(self.lock, work, spawn=self.spawn)
        finally:
            with self._active_lock:
                self._active -= 1

    async def _stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        async for chunk in run_in_thread(self.lock, lambda cancel: self.generate(request, cancel),
                                         spawn=self.spawn):
            yield chunk

    def generate_text(self, request: TextRequest, cancelled: threading.Event) -> Iterator[ChatChunk]:
        """Blocking raw-prompt generator; runtimes that support completions override it."""
        raise UnsupportedError(f"model {self.model_id} does not support text completions "
                               "(/v1/completions)", param="model")

    def embed_texts(self, texts: list[str | list[int]]) -> tuple[list[list[float]], int]:
        """Blocking embeddings; runtimes that support them override it."""
        raise UnsupportedError(f"model {self.model_id} is a chat model and does not support "
                               "embeddings", param="model", code="model_not_embedding")

    async def stream_text(self, request: TextRequest) -> AsyncIterator[ChatChunk]:
        with self._active_lock:
            self._active += 1
        try:
            async for chunk in run_in_thread(self.lock,
                                             lambda cancel: self.generate_text(request, cancel),
                                             spawn=self.spawn):
                yield chunk
        finally:
            with self._active_lock:
                self._active -= 1

    async def embed(self, texts: list[str | list[int]]) -> tuple[list[list[float]], int]:
        with self._active_lock:
            self._active += 1
        try:
            return await run_to_end(self.lock, lambda _cancelled: self.embed_texts(texts),
                                    spawn=self.spawn)
        finally:
            with self._active_lock:
                self._active -= 1


_DONE = object()


Spawn = Callable[[Callable[[], None]], None]
"""Starts a job on a worker thread (``LocalChatModel.spawn``)."""


async def run_in_thread(lock: threading.Lock, make_iter: Any, *, spawn: Spawn) -> AsyncIterator[Any]:
    """Drive ``make_iter(cancelled)`` on a worker thread (``spawn``) under ``lock``; yield its items.

    The consumer going away (close/cancel) sets ``cancelled``; the thread finishes the token
    it is on, releases the lock and takes its next job.  The thread wakes the event loop only
    when the consumer is parked waiting; items produced while it is busy are picked up next.
    """
    loop = asyncio.get_running_loop()
    pending: collections.deque[Any] = collections.deque()
    guard = threading.Lock()
    waiter: list[asyncio.Future[None]] = []  # at most one: the parked consumer
    cancelled = threading.Event()

    def put(item: Any) -> None:
        with guard:
            pending.append(item)
            parked = waiter.pop() if waiter else None
        if parked is None:
            return
        try:
            loop.call_soon_threadsafe(_wake, parked)
        except RuntimeError:  # loop closed: nobody is listening any more
            cancelled.set()
        time.sleep(0)  # hand the GIL to the event loop now, not after the 5 ms switch interval

    def work() -> None:
        try:
            with lock:
                if cancelled.is_set():
                    return
                for item in make_iter(cancelled):
                    if cancelled.is_set():
                        break
                    put(item)
        except BaseException as exc:
            put(_Raised(exc))
        finally:
            put(_DONE)

    spawn(work)
    try:
        while True:
            with guard:
                if pending:
                    item, parked = pending.popleft(), None
                else:
                    parked = loop.create_future()
                    waiter.append(parked)
            if parked is not None:
                await parked
                continue
            if item is _DONE:
                break
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        cancelled.set()


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def run_to_end(lock: threading.Lock, work: Callable[[threading.Event], Any], *,
                     spawn: Spawn) -> Any:
    """``work(cancelled)`` on a worker thread (``spawn``) under ``lock``; its return value.

    If the caller is cancelled (the client went away) ``cancelled`` is set: a call still
    waiting for the lock never starts, a running one stops at its next check.
    """
    cancelled = threading.Event()
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def call() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            with lock:
                if cancelled.is_set():
                    raise ProviderError("the request was cancelled before it ran", code="cancelled")
                result = work(cancelled)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)

    spawn(call)
    try:
        return await asyncio.wrap_future(future)
    finally:
        cancelled.set()


@dataclass
class _Raised:
    exc: BaseException
