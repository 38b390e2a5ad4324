"""Continuous batching for a Transformers model, on Transformers' own continuous batching.

A :class:`TransformersBatchEngine` drives one ``ContinuousBatchingManager``
(``model.init_continuous_batching``, :mod:`transformers.generation.continuous_batching`) over
the loaded model (one copy of the weights): concurrent requests decode in one forward pass
over a paged KV cache, joining and leaving between tokens, each with its own
``max_new_tokens``, EOS ids, temperature and top_p (the manager's per-request logits
processors) and cancellation (``cancel_request``: a client leaving ends only its member).
Its generation thread runs the batch steps and hands each member's streamed tokens to its
:class:`~app.providers.batch_jobs.SlotJob` (:meth:`TransformersBatchEngine.deliver`, through
the manager's ``OutputRouter``); a failed member, or every member when the manager's thread
dies, gets its error; after that, requests take the one-sequence loop.

Checked here (CPU, Transformers 5.24): greedy output equals our one-sequence loop over a
``DynamicCache`` token for token, batched or not, members joining mid-way included.

What the manager has no per-request form of (a grammar for tools or ``response_format``, a
seed at temperature > 0, presence/frequency penalties, logprobs' score rows) is done by our
own per-request logits processor (:class:`MemberPicks`, first in the manager's list, on its raw
logits): a member with a ``picker`` (our one-sequence sampler, masked by its grammar) gets its
token picked there and its row made one-hot, which the manager's sampling (top-k 1 for such
members) then takes; a member asking for logprobs gets its raw rows with its tokens.  So every
request joins the batch, and its tokens equal the one-sequence loop's (seeded ones included).

Runs alone, by rule: a prompt that does not fit a slot (:attr:`slot_ctx`), and every request
once the manager's thread has died.  Such a request runs on the model's own token loop with
every forward pass inside the manager's pause window (:meth:`between_steps`): between two
batch steps, never during one; the members go on decoding between its tokens.  (Measured: a
one-sequence forward running on another thread *during* a batch step can return wrong
logits, and can leave later ones wrong too.)  Embeddings run the same way.

Temperature 0 is greedy as top-k 1 (the manager samples for the whole batch; a one-token
top-k makes that draw certain).

Prefix cache: the manager shares whole KV pages (:data:`PAGE_SIZE` tokens) between prompts
and keeps finished requests' pages until memory is needed; the prompt tokens a member found
there are reported as its cached tokens (:class:`CachedPrefixScheduler`).

Watchdog: each of the manager's batch steps runs in the engine's
:class:`~app.providers.batch_jobs.StepClock` (its query tokens, as the scheduler counted them);
for a step that never returns the model calls :meth:`TransformersBatchEngine.abandon`, which
ends every member and refuses new ones at once (the model's ``close`` stops the manager later,
on the model's own worker, never on the watchdog's thread).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from app.providers.base import ProviderError
from app.providers.batch_jobs import SlotJob, StepClock

log = logging.getLogger(__name__)

PAGE_SIZE = 32
"""Tokens per KV page: the prefix cache's granularity (the manager's default, 256, suits GPUs
serving long prompts; small pages keep short shared prefixes)."""

PREFILL_CHUNK = 512
"""Prompt tokens per batch step (a longer prompt is prefilled over several steps, sharing
them with the decoding members)."""

DEFAULT_SLOT_CTX = 4096
"""Tokens of KV per member when the row sets no ``parallel_ctx`` (and the model's context is
larger): the paged cache holds ``parallel`` x this many tokens, allocated at load."""


def slot_context(parallel_ctx: int | None, context: int | None) -> int:
    """Tokens of KV per member: the row's ``parallel_ctx``, else the model's context up to
    :data:`DEFAULT_SLOT_CTX`."""
    return int(parallel_ctx or min(context or DEFAULT_SLOT_CTX, DEFAULT_SLOT_CTX))


def cache_pages(n_slots: int, slot_ctx: int) -> int:
    """KV pages the engine allocates at load: each slot's context rounded up to whole pages,
    plus one page per slot."""
    return (-(-slot_ctx // PAGE_SIZE) + 1) * n_slots


def batch_tokens(n_slots: int) -> int:
    """Query tokens per batch step (the manager's ``max_batch_tokens``)."""
    return max(PREFILL_CHUNK, n_slots)

SCHEDULER_NAME = "tater-cached-prefix"

MEMBER_KWARG = "tater_member"
"""The per-request logits processor argument naming a member for :class:`MemberPicks`."""

NO_TOP_K = 2**31 - 1
"""Top-k off: the manager clamps k to the vocabulary (and raises 0 to 1, which would be greedy)."""


@dataclass(frozen=True)
class Sampling:
    """A batched member's sampling: the manager's own per-request temperature and top-p, or a
    ``picker`` of ours (a grammar, a seed, penalties) that picks the member's token from its raw
    logits row (:class:`MemberPicks`)."""

    temperature: float
    top_p: float
    picker: Any = None
    """Anything with ``pick(logits_row) -> token`` (Transformers' ``_Sampler``, masked by a
    grammar or not); None: the manager samples."""

    def kwargs(self) -> dict[str, Any]:
        """``add_request`` keyword arguments (temperature 0 or a picker: greedy, as top-k 1, which
        keeps a picked token's one-hot row as it is)."""
        if self.temperature <= 0 or self.picker is not None:
            return {"temperature": 1.0, "top_k": 1, "top_p": 1.0}
        top_p = self.top_p if 0.0 < self.top_p < 1.0 else 1.0
        return {"temperature": float(self.temperature), "top_k": NO_TOP_K, "top_p": float(top_p)}


@dataclass
class Member:
    """What :class:`MemberPicks` needs of a member: its picker, and its raw rows when it keeps scores."""

    picker: Any
    keep_scores: bool
    rows: collections.deque[Any] = field(default_factory=collections.deque)
    error: BaseException | None = None


@functools.cache
def _member_picks() -> type:
    """The manager's per-request logits processor that runs our members' pickers (made lazily:
    it subclasses a Transformers class)."""
    import torch
    from transformers.generation.continuous_batching.cb_logits_processors import (
        ContinuousBatchingLogitsProcessor,
    )

    class MemberPicks(ContinuousBatchingLogitsProcessor):
        """First of the manager's logits processors: for each row of a member with a picker (its
        ``member`` argument), the picker's token becomes the row's only finite logit, so the
        manager's own sampling (top-k 1 for these members) takes it; rows of members that keep
        scores are copied first, raw, for their logprobs."""

        supported_kwargs: dict[str, type] = {MEMBER_KWARG: int}  # noqa: RUF012 - the base's shape
        ignored_kwargs: tuple[str, ...] = ()

        def __init__(self, members: dict[int, Member], eos: int) -> None:
            self.members = members
            self.eos = eos

        def fill_defaults(self, int32_tensor: Any) -> None:
            int32_tensor.fill_(-1)

        def prepare_tensor_args(self, requests_with_new_token: list[Any]) -> Any:
            ids = [r.state.logit_processor_kwargs.get(MEMBER_KWARG, -1) for r in requests_with_new_token]
            return torch.tensor(ids, dtype=torch.int32, device="cpu")

        def __call__(self, scores: Any, tensor_arg: Any) -> Any:
            ids = tensor_arg[: scores.size(0)].tolist()
            if max(ids, default=-1) < 0:
                return scores
            for row, member_id in enumerate(ids):
                member = self.members.get(member_id)
                if member is None:
                    continue
                if member.keep_scores:
                    member.rows.append(scores[row].clone())
                if member.picker is None:
                    continue
                try:
                    token = member.picker.pick(scores[row])
                except Exception as exc:  # its grammar failed: this member ends, the others go on
                    member.error, token = exc, self.eos
                scores[row].fill_(float("-inf"))
                scores[row, token] = 0.0
            return scores

    return MemberPicks


@functools.cache
def _cached_prefix_scheduler() -> type:
    """The manager's FIFO scheduler, recording how many prompt tokens each request found in the
    cache (its KV offset when first scheduled), registered under :data:`SCHEDULER_NAME`."""
    from transformers.generation.continuous_batching.scheduler import SCHEDULER_MAPPING, FIFOScheduler

    class CachedPrefixScheduler(FIFOScheduler):
        """FIFO scheduling; ``cached[request_id]``: prompt tokens whose KV pages were shared;
        ``step_tokens``: the latest batch's query tokens."""

        def reset(self) -> None:
            super().reset()
            self.cached: dict[str, int] = {}

        def schedule_batch(self, token_budget: int, cache_budget: int) -> Any:
            scheduled = super().schedule_batch(token_budget, cache_budget)
            self.step_tokens = int(scheduled[2] or 0)  # the step's query tokens, for the watchdog
            for future in scheduled[0] or []:
                self.cached.setdefault(future.state.request_id, future.state.position_offset)
            return scheduled

    SCHEDULER_MAPPING[SCHEDULER_NAME] = CachedPrefixScheduler
    return CachedPrefixScheduler


@functools.cache
def _job_router() -> type:
    """The manager's ``OutputRouter``, handing every output to the engine's :meth:`deliver` on
    the manager's own thread (no extra thread hop per token)."""
    from transformers.generation.continuous_batching.continuous_api import OutputRouter

    class JobRouter(OutputRouter):
        """Outputs straight to their jobs (see :meth:`TransformersBatchEngine.deliver`)."""

        def __init__(self, engine: TransformersBatchEngine) -> None:
            super().__init__()
            self.engine = engine

        def deliver(self, output: Any) -> None:
            self.engine.deliver(output)

        def deliver_batch(self, outputs: list[Any]) -> None:
            for output in outputs:
                self.engine.deliver(output)

    return JobRouter


class TransformersBatchEngine:
    """Batched decoding of up to ``n_slots`` requests at once on ``model`` (see the module docstring)."""

    def __init__(self, model: Any, n_slots: int, slot_ctx: int, eos_ids: set[int]) -> None:
        import torch
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        _cached_prefix_scheduler()
        self.n_slots = n_slots
        self.slot_ctx = slot_ctx
        self.eos_ids = set(eos_ids)
        self.closed = False
        self.stopped = False
        """Whether :meth:`close` stopped the manager's thread (or is stopping it)."""
        self.lock = threading.Lock()
        self.jobs: dict[str, SlotJob] = {}
        self.started: set[str] = set()
        self.ids = itertools.count()
        self.submitted = 0
        """Requests the manager has been given so far."""
        self.solo_count = 0
        self.forward_lock = threading.Lock()
        """Held around each one-sequence forward pass: one at a time, inside the pause window."""
        # Every request passes all three: these values only make the manager build the
        # per-request temperature, top-k and top-p processors.
        generation = GenerationConfig(do_sample=True, temperature=0.5, top_k=1, top_p=0.5,
                                      eos_token_id=sorted(self.eos_ids), max_new_tokens=slot_ctx)
        config = ContinuousBatchingConfig(
            page_size=PAGE_SIZE, num_blocks=cache_pages(n_slots, slot_ctx),
            max_batch_tokens=batch_tokens(n_slots), max_requests_per_batch=n_slots,
            per_request_processors=True, scheduler_type=SCHEDULER_NAME,
            use_async_batching=False,  # a picker's token must be known before the next step
            auto_switch_to_flash=False,  # keep the model's attention as the one-sequence loop uses it
            use_cuda_graph=False)  # (CUDA graphs beside our eager passes: untested)
        self.manager = model.init_continuous_batching(generation_config=generation,
                                                      continuous_batching_config=config)

        self.manager.output_router = _job_router()(self)
        self.abandoned: BaseException | None = None
        """The error every submit gets once the watchdog gave up on the engine (:meth:`abandon`)."""
        self.clock = StepClock()
        self._clock_steps()
        self.members: dict[int, Member] = {}
        """Members with a picker or kept scores, by their id (``MEMBER_KWARG``)."""
        self.member_of: dict[str, int] = {}
        self._add_member_picks(min(self.eos_ids, default=0))

        def start() -> None:  # threads inherit daemon-ness: a forgotten engine never blocks exit
            with torch.inference_mode():
                self.manager.start()

        starter = threading.Thread(target=start, name="tater-hf-batch-start", daemon=True)
        starter.start()
        starter.join()

    def _clock_steps(self) -> None:
        """Run each of the manager's batch steps (its ``_generation_step``, after the batch is
        scheduled) in :attr:`clock`, counting the step's query tokens."""
        step = self.manager._generation_step

        def clocked() -> None:
            scheduler = getattr(self.manager.batch_processor, "scheduler", None)
            tokens = getattr(scheduler, "step_tokens", 0) or max(PREFILL_CHUNK, self.n_slots)
            with self.clock.step(tokens):
                step()

        self.manager._generation_step = clocked

    def _add_member_picks(self, eos: int) -> None:
        """Put :class:`MemberPicks` first among the manager's logits processors (before its
        thread starts and sizes their argument tensors): it sees raw logits."""
        processors = self.manager.logit_processor
        processors.logits_processor.insert(0, _member_picks()(self.members, eos))
        processors.tensors_required += 1
        processors.supported_keys[MEMBER_KWARG] = int
        processors.do_processing = True

    # -- the request side -------------------------------------------------------------
    def fits(self, prompt_len: int) -> bool:
        """Whether a prompt leaves room for at least one token in a member's slot."""
        return 0 < prompt_len < self.slot_ctx

    @property
    def broken(self) -> bool:
        """Whether the manager's thread died (its error went to the members of the time)."""
        return self.manager.background_thread_status.fatal_error is not None

    def room(self, prompt_len: int, budget: int | None) -> int:
        """Tokens a member may generate: its budget, within its slot."""
        room = self.slot_ctx - prompt_len
        return room if budget is None else min(budget, room)

    def submit(self, job: SlotJob) -> SlotJob:
        """Queue ``job`` (``job.sampler`` is a :class:`Sampling`); its tokens come out of ``job.tokens()``."""
        number = next(self.ids)
        request_id = f"tater-{number}"
        sampling: Sampling = job.sampler
        kwargs = sampling.kwargs()
        with self.lock:
            if self.abandoned is not None:
                raise self.abandoned
            if self.closed or self.broken:
                raise ProviderError("the model's batch engine is closed", status=503,
                                    code="model_unloaded")
            self.jobs[request_id] = job
            self.submitted += 1
            if sampling.picker is not None or job.keep_scores:
                self.members[number] = Member(sampling.picker, job.keep_scores)
                self.member_of[request_id] = number
                kwargs[MEMBER_KWARG] = number
        accepted = self.manager.add_request(
            list(job.prompt), request_id=request_id, streaming=True,
            max_new_tokens=self.room(len(job.prompt), job.max_tokens),
            eos_token_id=sorted(self.eos_ids), **kwargs)
        if accepted is None:
            with self.lock:
                self.jobs.pop(request_id, None)
                self.members.pop(self.member_of.pop(request_id, -1), None)
            raise ProviderError("the model's batch engine is not accepting requests", status=503,
                                code="model_unloaded")
        return job

    @contextlib.contextmanager
    def solo(self) -> Iterator[None]:
        """Around a request that runs alone: its forward passes pause the batch one at a time
        (:meth:`between_steps`); the members decode between them."""
        with self.lock:
            self.solo_count += 1
        try:
            yield
        finally:
            with self.lock:
                self.solo_count -= 1

    @contextlib.contextmanager
    def between_steps(self) -> Iterator[None]:
        """Around one forward pass outside the batch: it runs between two batch steps (503 once
        the engine is closing: the model is going away)."""
        with self.forward_lock:
            if self.closed:
                raise ProviderError("the model was unloaded", status=503, code="model_unloaded")
            if not self.manager.is_running():  # its thread died: there is no batch to pause
                yield
                return
            with contextlib.ExitStack() as paused:
                try:
                    paused.enter_context(self.manager.pause())
                except RuntimeError as exc:  # the loop stopped while this pass waited for it
                    raise ProviderError("the model was unloaded", status=503,
                                        code="model_unloaded") from exc
                yield

    def active(self) -> int:
        """Members decoding now (their first token came, their last has not)."""
        with self.lock:
            return len(self.started)

    def held(self) -> int:
        """Requests the manager holds now (decoding, prefilling or queued); a cancelled one is
        gone from it at the next batch step."""
        scheduler = getattr(self.manager.batch_processor, "scheduler", None)
        if scheduler is None:
            return 0
        return len(scheduler.active_requests) + len(scheduler.waiting_requests)

    def close(self) -> None:
        """End every member (503), stop the manager's thread and free its cache."""
        self._end_all(ProviderError("the model was unloaded", status=503, code="model_unloaded"))
        with self.lock:
            if self.stopped:
                return
            self.stopped = True
        with self.forward_lock:  # a pass outside the batch in flight ends first; later ones get 503
            try:
                self.manager.stop(block=True, timeout=30, hard_stop=True)  # no flushing the queue
            except Exception:  # stopping is best effort: the model is going away anyway
                log.warning("the Transformers batch manager did not stop cleanly", exc_info=True)

    def abandon(self, error: BaseException) -> None:
        """A batch step is stuck: every member gets ``error``, later submits too, at once; the
        manager's thread is stopped by :meth:`close` later (the model frees itself on its own
        worker), never waited for here."""
        with self.lock:
            self.abandoned = error
        self._end_all(error)

    def _end_all(self, error: BaseException) -> None:
        """Close the engine to new requests and end every member with ``error``."""
        with self.lock:
            self.closed = True
            jobs = list(self.jobs.values())
            self.jobs.clear()
            self.started.clear()
            self.members.clear()
            self.member_of.clear()
        for job in jobs:
            job.out.put(error)

    # -- on the manager's thread ----------------------------------------------------------
    def deliver(self, output: Any) -> None:
        """One member's streamed output (the manager's ``OutputRouter`` calls this after each
        batch step): its new tokens go to its job; members whose reader left are cancelled."""
        from transformers.generation.continuous_batching import RequestStatus

        self._cancel_stopped()
        rid = output.request_id
        with self.lock:
            job = self.jobs.get(rid)
            if job is not None:
                self.started.add(rid)
                if job.generated == 0:
                    job.cached_tokens = self._cached(rid)
        if job is None:
            return
        member = self.members.get(self.member_of.get(rid, -1))
        if member is not None and member.error is not None:
            self.manager.cancel_request(rid)
            self._finish(rid, member.error)
            return
        for token in output.generated_tokens[job.generated:]:
            job.generated += 1
            scores = member.rows.popleft() if member is not None and member.rows else None
            job.out.put((token, scores, token in self.eos_ids))
        if output.status == RequestStatus.FAILED:
            self._finish(rid, ProviderError(f"the batch engine failed: {output.error}",
                                            code="runtime_error"))
        elif output.is_finished():
            self._finish(rid, None)

    def _cached(self, request_id: str) -> int:
        processor = self.manager.batch_processor
        scheduler = getattr(processor, "scheduler", None)
        return int(getattr(scheduler, "cached", {}).pop(request_id, 0))

    def _cancel_stopped(self) -> None:
        with self.lock:
            gone = [rid for rid, job in self.jobs.items() if job.stopped()]
        for rid in gone:
            self.manager.cancel_request(rid)
            self._finish(rid, None)

    def _finish(self, request_id: str, error: BaseException | None) -> None:
        with self.lock:
            job = self.jobs.pop(request_id, None)
            self.started.discard(request_id)
            self.members.pop(self.member_of.pop(request_id, -1), None)
        if job is not None:
            job.out.put(error)
