"""Blocking runtimes (llama.cpp, MLX, Transformers) behind the async :class:`ChatModel` interface.

A :class:`LocalChatModel` writes a plain generator; calls are serialised with a lock (llama.cpp
aborts the process when two threads use one model), run on a worker thread, and ``cancelled`` is
set when the consumer stops reading, so a generation ends within a token of a client hanging up.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
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
from app.providers.batch_jobs import BatchEngine, own_thread
from app.providers.local_structured import vet_request
from app.providers.owner_thread import OwnerThread

log = logging.getLogger(__name__)

IDLE_WORKER_EXIT = 60.0
"""Seconds a model's worker thread waits for work before it ends (the next request restarts it)."""


class ModelStalled(ProviderError):
    """The runtime stopped making progress (or would not stop for a client that left); the model
    is abandoned and reloaded, so the request fails and the next one gets a fresh instance."""

    status = 503
    code = "model_stalled"


class LocalChatModel(ChatModel):
    """A model driven by a blocking runtime: implement :meth:`generate` as a generator.

    Calls are serialised with a lock (llama.cpp aborts the process when two threads use one
    model) and run in arrival order on the model's own worker thread (kept while the model is
    loaded: starting a thread per request costs more than a token of a small model);
    ``cancelled`` is set when the consumer stops reading, so a generation ends within a token of
    a client hanging up.

    Every call is watched (:class:`RuntimeCall`): the hub's watchdog asks :meth:`stalled` and,
    for a call stuck in the runtime, :meth:`abandon` fails every waiting request with
    :class:`ModelStalled` and leaves the stuck thread behind (a thread in C cannot be stopped).
    A model with a batch :attr:`engine` is watched by the engine's step clock too (a batch step
    past its deadline, :func:`batch_step_overdue`); abandoning it ends every member and waiting
    job the same way.
    """

    parallelism = 1  # the runtime serialises: one generation at a time
    engine: BatchEngine | None = None
    """The runtime's batch engine (None: one request at a time); set by its provider."""

    def __init__(self, model_id: str, *, context_length: int | None = None) -> None:
        super().__init__(model_id, context_length=context_length)
        self.lock = threading.Lock()
        self.worker = OwnerThread(f"tater-model {model_id}", idle_exit=IDLE_WORKER_EXIT)
        self.broken: str | None = None
        """Why the model was abandoned (None while it works); a broken model refuses new calls."""
        self._calls: set[RuntimeCall] = set()
        self._calls_lock = threading.Lock()

    @abstractmethod
    def generate(self, request: ChatRequest, cancelled: threading.Event) -> Iterator[ChatChunk]:
        """Blocking generator; check ``cancelled`` between tokens and return when it is set."""

    def check_request(self, request: ChatRequest) -> None:
        """Tools, ``tool_choice`` and schemas are vetted (a refused schema is a 400 naming its
        limit, whatever the prompt's length)."""
        vet_request(request)

    def close(self) -> None:
        """Free runtime memory (called on a worker thread)."""

    def spawn(self, job: Callable[[], None]) -> None:
        """Queue ``job`` on the model's worker thread; MLX overrides it (one thread for all)."""
        self.worker.spawn(job)

    async def aclose(self) -> None:
        if self.broken:
            return  # :meth:`abandon` already queued the freeing
        await self._run_to_end(lambda _call: self.close(), prompt_bytes=0)
        self.worker.stop()

    def close_now(self) -> None:
        """Free the model once its current call (if any) ends; blocks the calling thread."""
        with self.lock:
            self.close()
        self.worker.stop()

    # -- the watchdog's view ------------------------------------------------------------
    def stalled(self, step_seconds: float) -> bool:
        """Whether a running call (:meth:`RuntimeCall.overdue`) or the engine's batch step in
        flight (:func:`batch_step_overdue`) is past its deadline."""
        now = time.monotonic()
        engine = self.engine
        if engine is not None and batch_step_overdue(engine.clock.in_flight(), now, step_seconds):
            return True
        with self._calls_lock:
            return any(c.overdue(now, step_seconds) for c in self._calls)

    def abandon(self, reason: str) -> None:
        """Give up on the runtime: fail every call (503), refuse new ones, free it if it returns."""
        error = ModelStalled(f"The model '{self.model_id}' got stuck ({reason}) and is being "
                             "reloaded. Retry the request.")
        with self._calls_lock:  # (with _watch: no call slips in unseen)
            self.broken = reason
            calls = list(self._calls)
        for call in calls:
            call.cancel()
            call.fail(error)
        if self.engine is not None:
            self.engine.abandon(error)  # its members' readers end; later submits are refused
        self.spawn(self._free_abandoned)  # runs only if (when) the stuck call returns
        self.worker.stop()

    def _free_abandoned(self) -> None:
        try:
            with self.lock:
                self.close()
        except Exception:
            log.exception("freeing the abandoned model %s failed", self.model_id)

    def _watch(self, call: RuntimeCall) -> None:
        with self._calls_lock:
            if self.broken:
                raise ModelStalled(f"The model '{self.model_id}' is being reloaded ({self.broken}). "
                                   "Retry the request.")
            self._calls.add(call)
        call.on_done(lambda: self._unwatch(call))  # watched until the worker is done with it

    def _unwatch(self, call: RuntimeCall) -> None:
        with self._calls_lock:
            self._calls.discard(call)

    # -- calls ----------------------------------------------------------------------------
    async def _run_to_end(self, work: Callable[[RuntimeCall], Any], *, prompt_bytes: int) -> Any:
        call = RuntimeCall(prompt_bytes)
        self._watch(call)
        return await run_to_end(self.lock, work, call, spawn=self.spawn)

    async def _run_in_thread(self, make_iter: Callable[[threading.Event], Iterator[Any]], *,
                             prompt_bytes: int) -> AsyncIterator[Any]:
        call = RuntimeCall(prompt_bytes)
        self._watch(call)
        async for item in run_in_thread(self.lock, make_iter, call, spawn=self.spawn):
            yield item

    async def _run_batched(self, make_iter: Callable[[threading.Event], Iterator[Any]]
                           ) -> AsyncIterator[Any]:
        """Items of ``make_iter(cancelled)`` on the request's own thread: a request on the
        :attr:`engine` (it waits on the engine, not on the model's worker).

        Its call is registered with the model (untimed: the engine's step clock judges
        progress; a member waiting for a slot is not stuck), so :meth:`abandon` fails it at
        once, and a broken model refuses it."""
        call = RuntimeCall(0, timed=False)
        self._watch(call)
        async for item in run_in_thread(threading.Lock(), make_iter, call, spawn=own_thread):
            yield item

    async def _complete_batched(self, make_iter: Callable[[threading.Event], Iterator[ChatChunk]],
                                request: ChatRequest) -> ChatResult:
        """The whole reply of a request on the :attr:`engine` (see :meth:`_run_batched`)."""
        def work(call: RuntimeCall) -> ChatResult:
            acc = Accumulator()
            for chunk in make_iter(call.cancelled):
                acc.add(chunk)
            return acc.result(request)

        call = RuntimeCall(0, timed=False)
        self._watch(call)
        with self._active_lock:
            self._active += 1
        try:
            return await run_to_end(threading.Lock(), work, call, spawn=own_thread)
        finally:
            with self._active_lock:
                self._active -= 1

    async def complete(self, request: ChatRequest) -> ChatResult:
        """The whole reply, generated and accumulated on the worker thread in one go.

        The same chunks as :meth:`stream`, without a thread hand-off per token (which costs
        more than a token of a small model); cancelling the caller stops it between tokens.
        """
        def work(call: RuntimeCall) -> ChatResult:
            acc = Accumulator()
            for chunk in self.generate(request, call.cancelled):
                call.step()
                acc.add(chunk)
            return acc.result(request)

        with self._active_lock:
            self._active += 1
        try:
            return await self._run_to_end(work, prompt_bytes=chat_prompt_bytes(request))
        finally:
            with self._active_lock:
                self._active -= 1

    async def _stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        async for chunk in self._run_in_thread(lambda cancel: self.generate(request, cancel),
                                               prompt_bytes=chat_prompt_bytes(request)):
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
            size = len(request.prompt.encode()) + len((request.suffix or "").encode())
            async for chunk in self._run_in_thread(lambda cancel: self.generate_text(request, cancel),
                                                   prompt_bytes=size):
                yield chunk
        finally:
            with self._active_lock:
                self._active -= 1

    async def embed(self, texts: list[str | list[int]]) -> tuple[list[list[float]], int]:
        with self._active_lock:
            self._active += 1
        try:
            return await self._run_to_end(lambda _call: self.embed_texts(texts),
                                          prompt_bytes=sum(len(t.encode()) if isinstance(t, str)
                                                           else 4 * len(t) for t in texts))
        finally:
            with self._active_lock:
                self._active -= 1


def chat_prompt_bytes(request: ChatRequest) -> int:
    """The prompt's size in UTF-8 bytes: an upper bound on its tokens for the prefill allowance."""
    return sum(len(m.content.encode()) for m in request.messages)


PREFILL_BYTES_PER_STEP = 1024
"""Prefill allowance: one step's time limit per this many prompt bytes (plus one step)."""

PREFILL_TOKENS_PER_STEP = PREFILL_BYTES_PER_STEP // 4
"""The same allowance for a batch step, which knows its tokens rather than its text's bytes:
text averages about four bytes a token, so a step's prompt chunk gets the time its text would
get as a single call's prompt."""


def batch_step_overdue(in_flight: tuple[float, int] | None, now: float, step: float) -> bool:
    """Whether a batch step in flight (``StepClock.in_flight``: its start and tokens) is past
    ``step x (1 + tokens / 256)``: the single call's prefill rule, for the prompt chunks and the
    decoding members' tokens a step feeds the runtime at once.  Between steps, never."""
    if in_flight is None:
        return False
    started, tokens = in_flight
    return now > started + step * (1 + tokens / PREFILL_TOKENS_PER_STEP)


class RuntimeCall:
    """One call on a model's worker thread, as the watchdog sees it.

    Time limits, with ``step`` the per-token limit (``limits.token_timeout_seconds``):

    - until the first token, ``step x (1 + prompt bytes / 1024)``: prefill grows with the
      prompt (a byte is at most a token), so a long prompt on slow hardware is not cut off;
    - between tokens, ``step``;
    - once the client has gone, at most ``step`` more: a runtime that will not stop between
      tokens is not allowed to hold the model for a request nobody waits for.

    A request on a batch engine is an untimed call (``timed=False``): registered so that
    :meth:`LocalChatModel.abandon` fails it, while the engine's step clock judges progress.
    """

    def __init__(self, prompt_bytes: int, *, timed: bool = True) -> None:
        self.prompt_bytes = prompt_bytes
        self.timed = timed
        """False for a request on a batch engine: the engine's step clock judges its progress."""
        self.cancelled = threading.Event()
        self.started: float | None = None
        self.last_step: float | None = None
        self.stepped = False
        self.cancelled_at: float | None = None
        self.done = False
        self._fail: Callable[[BaseException], None] = lambda _exc: None
        self._done_hook: Callable[[], None] = lambda: None

    def begin(self) -> None:
        """The call is running on the worker (it holds the model's lock)."""
        self.started = self.last_step = time.monotonic()

    def step(self) -> None:
        """The runtime produced something (a token, a chunk)."""
        self.last_step = time.monotonic()
        self.stepped = True

    def cancel(self) -> None:
        """The consumer left: the call should stop at its next check."""
        if not self.cancelled.is_set():
            self.cancelled_at = time.monotonic()
            self.cancelled.set()

    def on_done(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` when the worker is finished with this call (it may outlive its consumer)."""
        self._done_hook = hook

    def finish(self) -> None:
        """The worker is done with this call (it ran, failed, or was skipped)."""
        self.done = True
        self._done_hook()

    def on_fail(self, fail: Callable[[BaseException], None]) -> None:
        """How to wake the waiting consumer with an error (set by the runner)."""
        self._fail = fail

    def fail(self, exc: BaseException) -> None:
        """Wake the consumer with ``exc`` (from any thread)."""
        self._fail(exc)

    def overdue(self, now: float, step: float) -> bool:
        """Whether this running call has passed its deadline (see the class docstring)."""
        if self.done or self.last_step is None or not self.timed:
            return False
        allowance = step if self.stepped else step * (1 + self.prompt_bytes / PREFILL_BYTES_PER_STEP)
        deadline = self.last_step + allowance
        if self.cancelled_at is not None:
            deadline = min(deadline, max(self.cancelled_at, self.last_step) + step)
        return now > deadline


_DONE = object()


Spawn = Callable[[Callable[[], None]], None]
"""Starts a job on a worker thread (``LocalChatModel.spawn``)."""


async def run_in_thread(lock: threading.Lock, make_iter: Any, call: RuntimeCall | None = None, *,
                        spawn: Spawn) -> AsyncIterator[Any]:
    """Drive ``make_iter(cancelled)`` on a worker thread (``spawn``) under ``lock``; yield its items.

    The consumer going away (close/cancel) sets ``cancelled``; the thread finishes the token
    it is on, releases the lock and takes its next job.  The thread wakes the event loop only
    when the consumer is parked waiting; items produced while it is busy are picked up next.
    ``call.fail`` (the watchdog) ends the consumer's wait with an error at once.
    """
    call = call or RuntimeCall(0)
    loop = asyncio.get_running_loop()
    pending: collections.deque[Any] = collections.deque()
    guard = threading.Lock()
    waiter: list[asyncio.Future[None]] = []  # at most one: the parked consumer
    cancelled = call.cancelled

    def put(item: Any) -> None:
        with guard:
            pending.append(item)
            parked = waiter.pop() if waiter else None
        if parked is None:
            return
        try:
            loop.call_soon_threadsafe(_wake, parked)
        except RuntimeError:  # loop closed: nobody is listening any more
            call.cancel()
        time.sleep(0)  # hand the GIL to the event loop now, not after the 5 ms switch interval

    def fail(exc: BaseException) -> None:
        with guard:
            pending.clear()
        put(_Raised(exc))

    call.on_fail(fail)

    def work() -> None:
        try:
            with lock:
                if cancelled.is_set():
                    return
                call.begin()
                for item in make_iter(cancelled):
                    call.step()
                    if cancelled.is_set():
                        break
                    put(item)
        except BaseException as exc:
            put(_Raised(exc))
        finally:
            call.finish()
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
        call.cancel()


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _settle(future: concurrent.futures.Future[Any], *, result: Any = None,
            exc: BaseException | None = None) -> None:
    """Resolve ``future`` unless someone (the worker or the watchdog) already did."""
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


async def run_to_end(lock: threading.Lock, work: Callable[[RuntimeCall], Any],
                     call: RuntimeCall | None = None, *, spawn: Spawn) -> Any:
    """``work(call)`` on a worker thread (``spawn``) under ``lock``; its return value.

    If the caller is cancelled (the client went away) ``call.cancelled`` is set: a call still
    waiting for the lock never starts, a running one stops at its next check.  ``call.fail``
    (the watchdog) ends the wait with an error at once.
    """
    call = call or RuntimeCall(0)
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    call.on_fail(lambda exc: _settle(future, exc=exc))

    def run() -> None:
        try:
            with lock:
                if call.cancelled.is_set():
                    raise ProviderError("the request was cancelled before it ran", code="cancelled")
                call.begin()
                result = work(call)
        except BaseException as exc:
            _settle(future, exc=exc)
        else:
            _settle(future, result=result)
        finally:
            call.finish()

    spawn(run)
    try:
        return await asyncio.wrap_future(future)
    finally:
        call.cancel()


@dataclass
class _Raised:
    exc: BaseException
