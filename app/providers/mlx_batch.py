"""Continuous batching for one MLX model: mlx-lm's own ``BatchGenerator``, driven on the MLX thread.

:class:`MlxBatchEngine` takes :class:`~app.providers.batch_jobs.SlotJob`\\ s and decodes every
member's next token in one forward pass (``BatchGenerator.next``, what ``mlx_lm.server``
uses).  Every MLX call must run on :data:`~app.providers.mlx_lm.MLX_THREAD`, so the engine is
a chain of jobs on that thread, one batch step each, queued again while there is work: another
MLX model's load or request runs between two steps instead of waiting for the whole batch.
Members join (their prompts are prefilled alongside the decoding members) and leave between
steps; a client that leaves removes only its own sequence.

Each member has its own sampler (:class:`MemberSampling`: temperature, top_p, presence and
frequency penalties, the request's grammar as a logits processor), stop tokens (the model's
EOS ids) and ``max_tokens``; stop strings are applied above, on the request's thread
(:func:`app.providers.textstream.token_steps`).  Sampling draws from a key of the member's
own (``mx.random.categorical(..., key=...)``), split every token, never from MLX's per-thread
global state: a seeded request gives the same reply whoever shares the batch, and the
runtime's one-sequence loop uses the same sampler, so a seed means the same with ``parallel``
1 or more.

Prefix cache: a member's KV cache (prompt and reply) is kept when it ends, in mlx-lm's
``LRUPromptCache`` (at most ``cache_bytes``, the row's ``prefix_cache_mb``, and
:data:`CACHE_ENTRIES` entries or one per member if more); a new prompt starts from the nearest
kept prefix, and the reused tokens are reported as cached tokens.

Watchdog: each batch step runs in the engine's :class:`~app.providers.batch_jobs.StepClock`,
counting the prompts it may prefill; for a step that never returns the model calls
:meth:`MlxBatchEngine.abandon` (from the watchdog's thread: the MLX thread is the stuck one).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from app.providers.base import ProviderError
from app.providers.batch_jobs import SlotJob, StepClock
from app.providers.owner_thread import OwnerThread

log = logging.getLogger(__name__)

UNBOUNDED = 1 << 31
"""``max_tokens`` of a member without a limit (``BatchGenerator`` needs a number)."""

CACHE_KEY = "model"
"""The prompt cache's model key (one cache per engine, one model per engine)."""

CACHE_ENTRIES = 10
"""Finished requests' caches kept at least (mlx_lm.server's default), within the byte budget."""

EXITING = threading.Event()
"""Set when the process exits (``mlx_lm.settle_mlx``): engines stop queueing batch steps, so
the MLX thread's queue can drain before MLX's static teardown."""


@dataclass
class MemberSampling:
    """How one request picks its tokens, built into MLX objects on the MLX thread (:meth:`build`).

    ``grammar`` is an mlx-lm logits processor (``LocalPlan.mlx_processor``) or None."""

    temperature: float
    top_p: float
    seed: int
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    grammar: Any = None

    def build(self) -> tuple[Callable[[Any], Any], list[Callable[[Any, Any], Any]]]:
        """The sampler (log-probabilities → token) and logits processors (call on the MLX thread)."""
        from mlx_lm.sample_utils import greedy_sampler, make_logits_processors

        processors: list[Callable[[Any, Any], Any]] = []
        if self.presence_penalty or self.frequency_penalty:
            processors = make_logits_processors(presence_penalty=self.presence_penalty or None,
                                                frequency_penalty=self.frequency_penalty or None)
        if self.grammar is not None:
            processors.append(self.grammar)
        if self.temperature <= 0:
            return greedy_sampler, processors  # one shared object: the batch samples in one call
        return keyed_sampler(self.temperature, self.top_p, self.seed), processors


def keyed_sampler(temperature: float, top_p: float, seed: int) -> Callable[[Any], Any]:
    """Temperature and top-p sampling from a PRNG key of its own, split every token."""
    import mlx.core as mx
    from mlx_lm.sample_utils import apply_top_p

    key = [mx.random.key(seed)]

    def sample(logprobs: Any) -> Any:
        key[0], draw = mx.random.split(key[0])
        if 0.0 < top_p < 1.0:
            logprobs = apply_top_p(logprobs, top_p)
        return mx.random.categorical(logprobs * (1.0 / temperature), key=draw)

    return sample


def batchable_model(model: Any) -> bool:
    """Whether mlx-lm can batch ``model`` (every layer's cache can merge, as mlx_lm.server checks)."""
    from mlx_lm.models.cache import make_prompt_cache

    return all(hasattr(c, "merge") for c in make_prompt_cache(model))


class MlxBatchEngine:
    """Batched decoding of up to ``n_slots`` requests on one MLX model (see the module docstring)."""

    def __init__(self, model: Any, n_slots: int, eos_ids: set[int], thread: OwnerThread, *,
                 cache_bytes: int) -> None:
        self.model = model
        self.n_slots = n_slots
        self.cache_bytes = cache_bytes
        """RAM for finished requests' prompt caches (0: no prefix cache)."""
        self.stop_tokens = [[t] for t in sorted(eos_ids)]
        self.thread = thread
        self.lock = threading.Lock()
        self.waiting: deque[SlotJob] = deque()
        self.members: dict[int, SlotJob] = {}
        """Members in the batch by ``BatchGenerator`` uid (changed only on the MLX thread)."""
        self.scheduled = False
        self.closed = False
        self.abandoned: BaseException | None = None
        """The error every submit gets once the watchdog gave up on the engine (:meth:`abandon`)."""
        self.clock = StepClock()
        self.generator: Any = None
        self.prompt_cache: Any = None

    # -- the request side -------------------------------------------------------------
    def submit(self, job: SlotJob) -> SlotJob:
        """Queue ``job``; its tokens come out of ``job.tokens()``."""
        with self.lock:
            if self.abandoned is not None:
                raise self.abandoned
            if self.closed:
                raise ProviderError("the model has been unloaded", status=503, code="model_unloaded")
            self.waiting.append(job)
            if not self.scheduled:
                self.scheduled = True
                self.thread.spawn(self._step)
        return job

    @contextlib.contextmanager
    def solo(self) -> Iterator[None]:
        """Nothing to pause: a request alone runs as one job on the MLX thread, so every batch
        step waits behind it (and it behind the step in flight)."""
        yield

    def active(self) -> int:
        """Members in the batch now."""
        return len(self.members)

    def close(self) -> None:
        """End every member (503), drop the batch and the prompt cache (on the MLX thread)."""
        self.thread.call(self._close_here)

    def abandon(self, error: BaseException) -> None:
        """A step is stuck on the MLX thread: every member and waiting job gets ``error``, later
        submits too, from the caller's thread (the stuck one is not waited for)."""
        with self.lock:
            self.abandoned = error
            self.closed = True
            jobs = [*self.members.values(), *self.waiting]
            self.waiting.clear()
        for job in jobs:
            job.out.put(error)

    # -- the MLX thread -------------------------------------------------------------------
    def _close_here(self) -> None:
        with self.lock:
            self.closed = True
        self._fail_all(ProviderError("the model was unloaded", status=503, code="model_unloaded"))

    def _drop(self) -> None:
        self.members.clear()
        if self.generator is not None:
            self.generator.close()
        self.generator = self.prompt_cache = None

    def _step(self) -> None:
        """One batch step; queued again while members decode or wait."""
        try:
            if not self.closed and not EXITING.is_set():
                with self.clock.step(self._step_tokens()):
                    self._advance()
        except Exception as exc:  # a failure ends the members, not the thread or the engine
            log.exception("the MLX batch step failed")
            self._fail_all(ProviderError(f"the batch engine failed: {exc}", code="runtime_error"))
        finally:
            with self.lock:
                if not self.closed and not EXITING.is_set() and (self.members or self.waiting):
                    self.thread.spawn(self._step)
                else:
                    self.scheduled = False

    def _step_tokens(self) -> int:
        """At most the tokens the next step feeds the model: a token per decoding member, the
        whole prompt of a member not decoding yet or about to join."""
        with self.lock:
            joining = list(self.waiting)[: max(0, self.n_slots - len(self.members))]
        members = list(self.members.values())
        return (sum(1 if job.generated else len(job.prompt) for job in members)
                + sum(len(job.prompt) for job in joining))

    def _fail_all(self, error: BaseException) -> None:
        with self.lock:
            jobs = [*self.members.values(), *self.waiting]
            self.waiting.clear()
        for job in jobs:
            job.out.put(error)
        self._drop()

    def _ensure_generator(self) -> Any:
        if self.generator is None:
            from mlx_lm.generate import BatchGenerator
            from mlx_lm.models.cache import LRUPromptCache

            self.generator = BatchGenerator(self.model, stop_tokens=self.stop_tokens,
                                            completion_batch_size=self.n_slots,
                                            prefill_batch_size=self.n_slots)
            if self.cache_bytes > 0:
                self.prompt_cache = LRUPromptCache(max_size=max(CACHE_ENTRIES, self.n_slots),
                                                   max_bytes=self.cache_bytes)
        return self.generator

    def _advance(self) -> None:
        generator = self._ensure_generator()
        gone = [uid for uid, job in self.members.items() if job.stopped()]
        if gone:  # clients that left, readers that stopped (a stop string): only their sequences
            kept = generator.remove(gone, return_prompt_caches=True)
            for uid in gone:
                self.members.pop(uid).out.put(None)
            for cache, tokens in kept.values():
                self._keep(tokens, cache)
        self._admit(generator)
        if not self.members:
            return
        _, responses = generator.next()
        for r in responses:
            job = self.members.get(r.uid)
            if job is None:
                continue
            job.generated += 1
            token = int(r.token)
            scores = _to_numpy(r.logprobs) if job.keep_scores else None
            job.out.put((token, scores, r.finish_reason == "stop"))
            if r.finish_reason is not None:
                del self.members[r.uid]
                job.out.put(None)
                if r.prompt_cache is not None:
                    self._keep(r.all_tokens, r.prompt_cache)

    def _admit(self, generator: Any) -> None:
        while len(self.members) < self.n_slots:
            with self.lock:
                if not self.waiting:
                    return
                job = self.waiting.popleft()
            if job.stopped():  # its client left while it waited
                job.out.put(None)
                continue
            try:
                self._insert(generator, job)
            except Exception as exc:  # this request's sampler or prompt: it alone fails
                log.exception("an MLX batch member could not start")
                job.out.put(ProviderError(f"the request could not join the batch: {exc}",
                                          code="runtime_error"))

    def _insert(self, generator: Any, job: SlotJob) -> None:
        sampler, processors = job.sampler.build()
        cache, rest = self._nearest(job.prompt)
        cached = len(job.prompt) - len(rest)
        (uid,) = generator.insert([rest], max_tokens=[job.max_tokens or UNBOUNDED],
                                  caches=[cache], all_tokens=[job.prompt[:cached]],
                                  samplers=[sampler], logits_processors=[processors])
        job.cached_tokens = cached
        self.members[uid] = job

    def _nearest(self, prompt: list[int]) -> tuple[Any, list[int]]:
        """The kept cache sharing the longest prefix with ``prompt`` (a copy) and the tokens
        still to prefill (at least one, for its logits); ``(None, prompt)`` without one."""
        from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

        if self.prompt_cache is None:
            return None, prompt
        cache, rest = self.prompt_cache.fetch_nearest_cache(CACHE_KEY, prompt)
        if cache is not None and not rest:  # the same prompt again: decode its last token anew
            if not can_trim_prompt_cache(cache):
                return None, prompt
            trim_prompt_cache(cache, 1)
            rest = prompt[-1:]
        return cache, list(rest)

    def _keep(self, tokens: list[int], cache: Any) -> None:
        if tokens and cache and self.prompt_cache is not None:
            self.prompt_cache.insert_cache(CACHE_KEY, list(tokens), cache)


def _to_numpy(logprobs: Any) -> Any:
    import numpy as np

    return np.array(logprobs, dtype=np.float32, copy=True)
