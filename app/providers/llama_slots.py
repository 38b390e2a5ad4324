"""Parallel slots for one llama.cpp model: continuous batching with a prefix cache per slot.

llama-cpp-python's high-level ``Llama`` serves one sequence. A :class:`SlotEngine` makes a
second llama.cpp context on the *same* loaded model (one copy of the weights) with
``n_seq_max`` = the slot count, and decodes every active request's next token in one
``llama_decode`` batch, each request in its own KV sequence with its own sampler
(:mod:`app.providers.llama_sampling`). Requests join and leave between tokens; a prompt is
prefilled in chunks that share the batch with the members already decoding.

Prefix cache: a slot keeps its KV after its request ends. A new request takes the free slot
whose tokens share the longest prefix with its prompt (then the least recently used one);
only the rest is prefilled, and the shared part is reported as cached tokens. A slot's cache
about to be overwritten is saved to a RAM budget of prefixes first
(:mod:`app.providers.prefix_store`), and copied back for a later request that shares more
with it than with any free slot.

One thread (the engine's) drives the context; the model's lock is taken around each decode,
so a request that runs alone on the high-level ``Llama`` (see :meth:`SlotEngine.solo`) runs
between two batch steps, never during one; while it waits or runs no new member is admitted.

Watchdog: each step (the ``llama_decode`` and the samplers) runs in the
engine's :class:`~app.providers.batch_jobs.StepClock`; for a step that never returns the model
calls :meth:`SlotEngine.abandon`, which ends every member and waiting job and refuses new ones
without waiting for the stuck thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.providers.base import ProviderError
from app.providers.batch_jobs import SlotJob, StepClock
from app.providers.prefix_store import MIN_SAVED_TOKENS, PrefixStore, common_prefix
from app.providers.thread_tuner import ThreadTuner

log = logging.getLogger(__name__)

MIN_SHARED = 0.5
"""Share of a prompt a slot's cached prefix must cover to be chosen over the least recently used slot."""

IDLE_WAIT = 1.0
"""Seconds the engine thread sleeps between checks while it has nothing to do."""


@dataclass
class Slot:
    """One KV sequence: the tokens whose KV it holds, and the job using it (None when free)."""

    seq_id: int
    tokens: list[int] = field(default_factory=list)
    job: SlotJob | None = None
    fed: int = 0
    """How many of the job's prompt tokens are in the KV (prefill progress)."""
    next_token: int | None = None
    last_used: int = 0


def pick_slot(slots: list[Slot], prompt: list[int]) -> tuple[Slot, int] | None:
    """The free slot for ``prompt`` and how many of its tokens it can reuse.

    The slot sharing the longest prefix wins when that prefix is at least
    :data:`MIN_SHARED` of the prompt (as llama-server's slot similarity); otherwise the least
    recently used slot (an empty one first), so a short common header (the chat template's
    first tokens) never evicts another client's long cache. At least one prompt token is
    always decoded again, for its logits."""
    free = [s for s in slots if s.job is None]
    if not free:
        return None
    shared = {s.seq_id: common_prefix(s.tokens, prompt) for s in free}
    best = max(free, key=lambda s: (shared[s.seq_id], -s.last_used))
    if shared[best.seq_id] < MIN_SHARED * len(prompt):
        best = min(free, key=lambda s: (s.last_used, -shared[s.seq_id]))
    return best, min(shared[best.seq_id], len(prompt) - 1)


class SlotEngine:
    """Batched decoding over ``n_slots`` KV sequences of a second context on ``llm``'s model."""

    def __init__(self, llm: Any, n_slots: int, slot_ctx: int, lock: threading.Lock, *,
                 saved_bytes: int = 0) -> None:
        import llama_cpp

        self.llama_cpp = llama_cpp
        self.llm = llm  # the weights outlive this context, however the model is dropped
        self.lock = lock
        self.step_lock = threading.Lock()
        """Held around each batch step: :meth:`close` waits for the step in flight."""
        self.n_slots = n_slots
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_seq_max = n_slots
        params.n_ctx = slot_ctx * n_slots
        params.kv_unified = False  # each slot its own cells: a long prompt never evicts another's
        params.embeddings = False
        self.threads = (int(params.n_threads), int(params.n_threads_batch))
        self.threads_now = self.threads[1]
        self.tuner = ThreadTuner(*self.threads)
        self.saved = PrefixStore(saved_bytes)
        """Slot caches saved before their slot is reused (:mod:`app.providers.prefix_store`)."""
        self.ctx = llama_cpp.llama_init_from_model(llm.model, params)
        if not self.ctx:
            raise ProviderError(f"llama.cpp could not make a context for {n_slots} slots of "
                                f"{slot_ctx} tokens", code="model_load_failed")
        self.n_batch = int(llama_cpp.llama_n_batch(self.ctx))
        self.slot_ctx = int(llama_cpp.llama_n_ctx_seq(self.ctx))
        self.vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.slots = [Slot(i) for i in range(n_slots)]
        self.waiting: list[SlotJob] = []
        self.last_prompt: list[int] = []
        """The prompt of the latest admitted request (what the runtime processed, for checks)."""
        self.solo_waiting = 0
        self.closed = False
        self.abandoned: BaseException | None = None
        """The error every submit gets once the watchdog gave up on the engine (:meth:`abandon`)."""
        self.cond = threading.Condition()
        self.uses = itertools.count(1)
        self.clock = StepClock()
        self.thread: threading.Thread | None = None

    # -- the request side -------------------------------------------------------------
    def fits(self, prompt: list[int]) -> bool:
        """Whether a prompt leaves room for at least one token in a slot."""
        return 0 < len(prompt) < self.slot_ctx

    def submit(self, job: SlotJob) -> SlotJob:
        """Queue ``job``; its tokens come out of ``job.tokens()``."""
        with self.cond:
            if self.abandoned is not None:
                raise self.abandoned
            if self.closed:
                raise ProviderError("the model has been unloaded", status=503, code="model_unloaded")
            self.waiting.append(job)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="tater-llama-slots",
                                               daemon=True)
                self.thread.start()
            self.cond.notify_all()
        return job

    @contextlib.contextmanager
    def solo(self) -> Iterator[None]:
        """Around a request that runs alone on the high-level ``Llama``: no member joins the
        batch until it is done; it takes the model's lock between two batch steps."""
        with self.cond:
            self.solo_waiting += 1
        try:
            yield
        finally:
            with self.cond:
                self.solo_waiting -= 1
                self.cond.notify_all()

    def active(self) -> int:
        """Members in the batch now."""
        return sum(s.job is not None for s in self.slots)

    def close(self) -> None:
        """Free the context (before the model is freed); waits for a batch step in flight."""
        self._end_all(ProviderError("the model was unloaded", status=503, code="model_unloaded"))
        with self.step_lock:
            if self.ctx:
                self.llama_cpp.llama_batch_free(self.batch)
                self.llama_cpp.llama_free(self.ctx)
                self.ctx = None

    def abandon(self, error: BaseException) -> None:
        """A step is stuck in llama.cpp: every member and waiting job gets ``error``, later
        submits too; the stuck step is not waited for (the model's ``close`` frees the context if
        it ever returns)."""
        with self.cond:
            self.abandoned = error
        self._end_all(error)

    def _end_all(self, error: BaseException) -> None:
        """Close the engine to new work and end every member and waiting job with ``error``."""
        with self.cond:
            self.closed = True
            jobs = [s.job for s in self.slots if s.job] + self.waiting
            self.waiting = []
            for slot in self.slots:
                slot.job = None
            self.cond.notify_all()
        for job in jobs:
            job.out.put(error)

    def __del__(self) -> None:
        if getattr(self, "ctx", None):
            self.close()

    # -- the engine thread ---------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # a bug here must end the members, not leave them waiting
            log.exception("the llama.cpp slot engine failed")
            with self.cond:
                jobs = [s.job for s in self.slots if s.job] + self.waiting
                self.waiting = []
                for slot in self.slots:
                    slot.job = None
                self.thread = None
            for job in jobs:
                job.out.put(ProviderError(f"the batch engine failed: {exc}", code="runtime_error"))

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.closed and not self._has_work():
                    if not self.cond.wait(IDLE_WAIT) and not self.waiting and not self.active():
                        self.thread = None
                        return
                if self.closed:
                    return
                self._admit()
            with self.lock, self.step_lock:
                if self.closed:
                    return
                self._step()

    def _has_work(self) -> bool:
        return self.active() > 0 or (bool(self.waiting) and self.solo_waiting == 0)

    def _admit(self) -> None:
        while self.waiting and self.solo_waiting == 0:
            if self.waiting[0].stopped():  # its client left while it waited
                self.waiting.pop(0).out.put(None)
                continue
            choice = pick_slot(self.slots, self.waiting[0].prompt)
            if choice is None:
                return
            job = self.waiting.pop(0)
            slot, reuse = choice
            if reuse < len(slot.tokens) and self.saved.worth_saving(slot.tokens):
                self._save(slot)
            reuse = self._restore(slot, job.prompt, reuse)
            if not self.llama_cpp.llama_memory_seq_rm(self.memory, slot.seq_id, reuse, -1):
                self.llama_cpp.llama_memory_seq_rm(self.memory, slot.seq_id, -1, -1)
                reuse = 0
            slot.tokens = slot.tokens[:reuse]
            slot.job, slot.fed, slot.next_token = job, reuse, None
            job.cached_tokens = reuse
            self.last_prompt = job.prompt

    def _save(self, slot: Slot) -> None:
        """Copy the slot's KV into the saved prefixes before it is overwritten."""
        lc = self.llama_cpp
        size = int(lc.llama_state_seq_get_size(self.ctx, slot.seq_id))
        if size <= 0 or size > self.saved.budget:
            return
        buffer = (ctypes.c_uint8 * size)()
        written = int(lc.llama_state_seq_get_data(self.ctx, buffer, size, slot.seq_id))
        if written > 0:
            self.saved.put(slot.tokens, bytes(buffer)[:written])

    def _restore(self, slot: Slot, prompt: list[int], reuse: int) -> int:
        """Copy a saved prefix into ``slot`` when it shares more of ``prompt`` than the slot does
        (by :data:`~app.providers.prefix_store.MIN_SAVED_TOKENS`, and at least :data:`MIN_SHARED`
        of it); the prompt tokens now in the slot's KV."""
        found = self.saved.best(prompt)
        if found is None:
            return reuse
        entry, shared = found
        shared = min(shared, len(prompt) - 1)
        if shared < reuse + MIN_SAVED_TOKENS or shared < MIN_SHARED * len(prompt):
            return reuse
        lc = self.llama_cpp
        lc.llama_memory_seq_rm(self.memory, slot.seq_id, -1, -1)
        buffer = (ctypes.c_uint8 * len(entry.state)).from_buffer_copy(entry.state)
        if not lc.llama_state_seq_set_data(self.ctx, buffer, len(entry.state), slot.seq_id):
            lc.llama_memory_seq_rm(self.memory, slot.seq_id, -1, -1)
            slot.tokens = []
            return 0
        slot.tokens = list(entry.tokens)
        return shared

    def _release(self, slot: Slot) -> None:
        slot.job, slot.next_token = None, None
        slot.last_used = next(self.uses)

    def _add(self, slot: Slot, token: int, logits: bool) -> int:
        b, i = self.batch, self.batch.n_tokens
        b.token[i] = token
        b.pos[i] = len(slot.tokens)
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = slot.seq_id
        b.logits[i] = logits
        b.n_tokens = i + 1
        slot.tokens.append(token)
        return i

    def _step(self) -> None:
        """One ``llama_decode``: each decoding member's last token, then prompt chunks."""
        self.batch.n_tokens = 0
        outputs: list[tuple[Slot, int]] = []
        for slot in self.slots:
            job = slot.job
            if job is not None and job.stopped():
                self._end(slot, None)
            elif job is not None and slot.next_token is not None:
                outputs.append((slot, self._add(slot, slot.next_token, True)))
                slot.next_token = None
        for slot in self.slots:
            job = slot.job
            if job is None or slot.fed >= len(job.prompt) or self.batch.n_tokens >= self.n_batch:
                continue
            take = min(len(job.prompt) - slot.fed, self.n_batch - self.batch.n_tokens)
            for k in range(take):
                last = slot.fed + k == len(job.prompt) - 1
                index = self._add(slot, job.prompt[slot.fed + k], last)
                if last:
                    outputs.append((slot, index))
            slot.fed += take
        if self.batch.n_tokens == 0:
            return
        n_tokens = int(self.batch.n_tokens)
        with self.clock.step(n_tokens):
            self._decode_and_sample(n_tokens, outputs)

    def _decode_and_sample(self, n_tokens: int, outputs: list[tuple[Slot, int]]) -> None:
        """The batch's ``llama_decode``, then each finished prompt's or member's next token."""
        self._set_threads(self.tuner.pick(n_tokens) if n_tokens > 1 else self.threads[0])
        started = time.perf_counter()
        rc = self.llama_cpp.llama_decode(self.ctx, self.batch)
        if n_tokens > 1:
            self.tuner.record(n_tokens, self.threads_now, time.perf_counter() - started)
        if rc != 0:
            error = ProviderError(f"llama.cpp could not decode the batch (code {rc})",
                                  code="runtime_error")
            for slot in {id(s): s for s, _ in outputs}.values():
                self.llama_cpp.llama_memory_seq_rm(self.memory, slot.seq_id, -1, -1)
                slot.tokens = []
                self._end(slot, error)
            return
        for slot, index in outputs:
            self._sample(slot, index)

    def _set_threads(self, wanted: int) -> None:
        """The thread count of the next step: one token (one member decoding) the decode count,
        as llama.cpp does for one sequence; a step of several tokens what :class:`ThreadTuner`
        measured to be faster."""
        if wanted != self.threads_now:
            self.llama_cpp.llama_set_n_threads(self.ctx, self.threads[0], wanted)
            self.threads_now = wanted

    def _sample(self, slot: Slot, index: int) -> None:
        job = slot.job
        if job is None:  # abandoned while the step was stuck: nobody waits for it any more
            return
        ptr = self.llama_cpp.llama_get_logits_ith(self.ctx, index)
        row = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
        try:
            token = job.sampler.pick(row, slot.tokens)
        except Exception as exc:  # a constraint failed: this member ends, the others go on
            self._end(slot, exc)
            return
        job.generated += 1
        eos = bool(self.llama_cpp.llama_vocab_is_eog(self.vocab, token))
        job.out.put((token, None, eos))
        full = (job.max_tokens is not None and job.generated >= job.max_tokens) \
            or len(slot.tokens) + 1 >= self.slot_ctx
        if eos or full:
            self._end(slot, None)
        else:
            slot.next_token = token

    def _end(self, slot: Slot, error: BaseException | None) -> None:
        job = slot.job
        self._release(slot)
        if job is not None:
            job.out.put(error)
