"""The job every runtime's batch engine consumes, and what such an engine offers.

A runtime that decodes concurrent requests in one batch (llama.cpp's parallel slots, mlx-lm's
``BatchGenerator``, Transformers' continuous batching) has an engine (:class:`BatchEngine`)
that takes :class:`SlotJob`\\ s: a request's prompt ids, the runtime's own sampler for it and
its limits go in; its tokens come out of :meth:`SlotJob.tokens` on the request's own thread
(:func:`own_thread`), in the ``(token, scores, is_eos)`` shape of
:func:`app.providers.textstream.token_steps`.  Members join and leave the batch between
tokens; a request the engine cannot batch runs alone between two batch steps
(:meth:`BatchEngine.solo`).
"""

from __future__ import annotations

import queue
import threading
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


class BatchEngine(Protocol):
    """What a runtime's batch engine offers the model that owns it."""

    n_slots: int
    """Members decoded at once (the model's ``parallelism``)."""

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


def own_thread(job: Callable[[], None]) -> None:
    """Run ``job`` on a new thread: a batched request's reader waits on the engine, not on the
    model's serialising worker."""
    threading.Thread(target=job, name="tater-batch-request", daemon=True).start()
