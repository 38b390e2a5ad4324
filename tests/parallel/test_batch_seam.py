"""The batching seam of the Hugging Face-format runtimes (``HfFormatModel`` + a batch engine).

A scripted engine (every job gets the same token ids) stands in for a runtime's engine, around
the real tiny tokenizer: batchable requests reach the engine from their own threads, usage
counts the engine's tokens and cached tokens, and what the runtime's rule keeps off the batch
runs alone on its own loop with the engine paused around it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.providers.base import ChatRequest, TextRequest, Usage
from app.providers.batch_jobs import SlotJob, StepClock
from app.providers.hf_common import HfFormatModel
from app.providers.local_structured import LocalPlan
from app.providers.textstream import GenerationEnd
from tests.providers.hf_fixtures import collect, req

SCRIPT: list[int] = []
"""The scripted reply's token ids (set from the tokenizer by the ``seam`` fixture)."""


class ScriptedEngine:
    """Answers every job with :data:`SCRIPT` (then EOS), from a thread of its own."""

    n_slots = 3

    def __init__(self, eos: int) -> None:
        self.eos = eos
        self.jobs: list[SlotJob] = []
        self.solo_entered = 0
        self.submit_threads: set[str] = set()
        self.clock = StepClock()  # never in a step: the scripted tokens need no runtime

    def submit(self, job: SlotJob) -> SlotJob:
        self.jobs.append(job)
        self.submit_threads.add(threading.current_thread().name)
        job.cached_tokens = 2

        def run() -> None:
            for token in SCRIPT[:job.max_tokens]:
                job.out.put((token, [0.0] if job.keep_scores else None, False))
            if job.max_tokens is None or job.max_tokens > len(SCRIPT):
                job.out.put((self.eos, None, True))
            job.out.put(None)

        threading.Thread(target=run, daemon=True).start()
        return job

    @contextlib.contextmanager
    def solo(self) -> Iterator[None]:
        self.solo_entered += 1
        yield

    def active(self) -> int:
        return 0

    def close(self) -> None:
        pass

    def abandon(self, error: BaseException) -> None:
        for job in self.jobs:
            job.out.put(error)


class SeamModel(HfFormatModel):
    """The seam around a real tokenizer; its own loop (:meth:`_tokens`) says which path ran."""

    def __init__(self, tokenizer: Any) -> None:
        super().__init__("seam", tokenizer, context_length=512)
        self.model = object()
        self.eos_ids = {int(tokenizer.eos_token_id)}
        self.alone_runs = 0

    def batch_sampler(self, request: ChatRequest | TextRequest, plan: LocalPlan | None,
                      prompt_len: int) -> Any:
        return ("sampling", request.temperature, prompt_len)

    def _tokens(self, ids: list[int], request: ChatRequest | TextRequest, budget: int | None,
                end: GenerationEnd, plan: LocalPlan | None) -> Generator[tuple[int, Any, bool]]:
        self.alone_runs += 1
        for n, token in enumerate(SCRIPT[:budget], 1):
            end.usage = Usage(len(ids), n)
            yield token, [0.0] * 600, False

    def _ranked(self, scores: Any, top: int) -> tuple[Any, list[int]]:
        return [0.0] * 600, list(range(top))


@pytest.fixture
def seam(tiny_hf_folder: Path) -> tuple[SeamModel, ScriptedEngine]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_hf_folder, local_files_only=True)
    SCRIPT[:] = tokenizer("the river and the stone", add_special_tokens=False)["input_ids"]
    assert len(SCRIPT) >= 5
    model = SeamModel(tokenizer)
    engine = ScriptedEngine(min(model.eos_ids))
    model.engine = engine
    return model, engine


async def test_batchable_requests_go_to_the_engine_from_their_own_threads(seam: Any) -> None:
    model, engine = seam
    assert model.parallelism == 3
    chunks = await collect(model, req(max_tokens=20))
    whole = await model.complete(req(max_tokens=20))
    assert "".join(c.text for c in chunks) == whole.text == model._decode(SCRIPT)
    last = chunks[-1]
    assert last.finish_reason == whole.finish_reason == "stop"
    # every token counts, EOS too (as the runtimes' own loops count it); the engine's cache hits
    assert last.usage.completion_tokens == len(SCRIPT) + 1 and last.usage.cached_tokens == 2
    assert len(engine.jobs) == 2 and model.alone_runs == 0 and engine.solo_entered == 0
    assert engine.jobs[0].max_tokens == 20 and engine.jobs[0].sampler[0] == "sampling"
    assert engine.submit_threads == {"tater-batch-request"}
    assert not model.lock.locked()


async def test_what_the_rule_keeps_off_the_batch_runs_alone(seam: Any) -> None:
    model, engine = seam
    result = await model.complete(req(max_tokens=4, logprobs=True, top_logprobs=1))
    text = [c async for c in model.stream_text(TextRequest(prompt="hi", max_tokens=3, logprobs=0))]
    assert result.text == model._decode(SCRIPT[:4]) and result.finish_reason == "length"
    assert "".join(c.text for c in text) == model._decode(SCRIPT[:3])
    assert model.alone_runs == 2 and engine.solo_entered == 2 and not engine.jobs


async def test_without_an_engine_everything_runs_alone(seam: Any) -> None:
    model, _ = seam
    model.engine = None
    assert model.parallelism == 1
    assert (await model.complete(req(max_tokens=3))).text == model._decode(SCRIPT[:3])
    assert model.alone_runs == 1


async def test_a_stop_string_ends_the_job(seam: Any) -> None:
    model, engine = seam
    result = await model.complete(req(max_tokens=20, stop=[" stone"]))
    assert result.text == "the river and the" and result.finish_reason == "stop"
    assert engine.jobs[0].done.is_set()  # the reader closed it: the engine drops it next step
