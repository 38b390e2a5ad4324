"""The job every runtime's batch engine consumes, and what such an engine offers.

A runtime that decodes concurrent requests in one batch (llama.cpp's parallel slots, mlx-lm's
``BatchGenerator``, Transformers' continuous batching) has an engine (:class:`BatchEngine`)
that takes :class:`SlotJob`\\ s: a request's prompt ids, the runtime's own sampler for it and
its limits go in; its tokens come out of :meth:`SlotJob.tokens` on the request's own thread
(:func:`own_thread`), in the ``(token, scores, is_eos)`` shape of
:func:`app.providers.textstream.token_steps`.  Members join and leave the batch between
tokens; a request the engine cannot batch runs alone between two batch steps
(:meth:`BatchEngine.solo`).

The watchdog sees an engine through its :class:`StepClock` (when the batch step in flight began
and how many tokens it holds) and gives up on a stuck one with :meth:`BatchEngine.abandon`.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class SlotJob:
    """One request in a batch engine: its prompt, sampler and limits; tokens come out of :meth:`tokens`."""

    prompt: list[int]
    sampler: Any
    """How the engine picks this member's tokens, in the runtime's own terms (llama.cpp: a
    ``SlotSampler``; MLX: its member sampler with the logits processors)."""
    max_tokens: int | None
    """Tokens to generate at most (None: until EOS or the end of the context)."""
    cancelled: threading.Event
    """The client went away (set by the request side)."""
    done: threading.Event = field(default_factory=threading.Event)
    """The reader stopped reading (a stop string, an error): the engine drops it at its next step."""
    cached_tokens: int = 0
    """Prompt tokens whose KV was already there (set by the engine when it admits the job)."""
    generated: int = 0
    keep_scores: bool = False
    """Send each token's scores (the runtime's logits or log-probabilities row) with it, for
    ``logprobs``; without it ``scores`` is None."""
    out: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    """What the engine hands the reader: ``(token, scores, is_eos)`` tuples, then None (the
    end) or an exception (raised to the reader)."""

    def tokens(self) -> Iterator[tuple[int, Any, bool]]:
        """``(token, scores, is_end_of_generation)`` as the engine samples them (textstream's
        shape); closing it (a stop string, the client gone) frees the member at the next step."""
        try:
            while True:
                item = self.out.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.done.set()

    def stopped(self) -> bool:
        """Whether the job should leave the batch."""
        return self.cancelled.is_set() or self.done.is_set()


class StepClock:
    """When an engine's batch step in flight began and how many tokens it feeds the runtime.

    The engine wraps each step (the runtime call that decodes the batch) in :meth:`step`; the
    watchdog (``LocalChatModel.stalled``) reads :meth:`in_flight`.  Between steps (idle, or
    waiting for the model while a request runs alone) nothing is in flight, so waiting members
    and a long queue are never mistaken for a stall: only a step that does not return is.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: float | None = None
        self._tokens = 0

    @contextlib.contextmanager
    def step(self, tokens: int) -> Iterator[None]:
        """Around one batch step of ``tokens`` tokens (prompt chunks and decoding members)."""
        with self._lock:
            self._started, self._tokens = time.monotonic(), tokens
        try:
            yield
        finally:
            with self._lock:
                self._started = None

    def in_flight(self) -> tuple[float, int] | None:
        """``(monotonic start, tokens)`` of the step in flight; None between steps."""
        with self._lock:
            return None if self._started is None else (self._started, self._tokens)


class BatchEngine(Protocol):
    """What a runtime's batch engine offers the model that owns it."""

    n_slots: int
    """Members decoded at once (the model's ``parallelism``)."""

    clock: StepClock
    """The step in flight, for the watchdog."""

    def submit(self, job: SlotJob) -> SlotJob:
        """Queue ``job`` (a 503 ``ProviderError`` once closed); its tokens come out of ``job.tokens()``."""
        ...

    def solo(self) -> AbstractContextManager[None]:
        """Around a request that runs alone on the runtime's one-sequence path: it runs between
        two batch steps, and no member joins the batch until it is done."""
        ...

    def active(self) -> int:
        """Members in the batch now."""
        ...

    def close(self) -> None:
        """End every member (503) and free the engine's state; later submits are refused."""
        ...

    def abandon(self, error: BaseException) -> None:
        """The runtime is stuck in a step: end every member and waiting job with ``error`` and
        refuse later submits, from any thread, without waiting for the step (it may never end)."""
        ...


def own_thread(job: Callable[[], None]) -> None:
    """Run ``job`` on a new thread: a batched request's reader waits on the engine, not on the
    model's serialising worker."""
    threading.Thread(target=job, name="tater-batch-request", daemon=True).start()
