"""A real llama.cpp model whose sampling can be made to hang, for the watchdog tests.

``WedgingLlama`` is the real :class:`LlamaCppModel` on the tiny GGUF; a chat request whose last
message contains ``wedge`` gets a logits processor that blocks inside llama-cpp-python's
sampling call (the same call path as a grammar that pins the sampler), until :data:`RELEASE`
is set, which the subprocess server never does.

With the row's ``parallel`` option above 1 the model gets :class:`WedgingSlotEngine`, the real
parallel slots whose batch step blocks inside its ``llama_decode`` call while a member's prompt
contains ``wedge`` (every member of that step is stuck with it, as with a runtime that hangs),
and takes :data:`SLOW_STEP` x its watchdog allowance units while one contains ``dawdle`` (a
healthy but slow batch).

Run as ``python -m tests.hardening.wedge serve ...`` it is ``tater serve`` (``app.cli.main``)
with this provider registered.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from app import providers
from app.providers.base import ChatRequest, TextRequest
from app.providers.batch_jobs import SlotJob
from app.providers.llama_cpp import LlamaCppModel, LlamaCppProvider
from app.providers.llama_slots import SlotEngine
from app.providers.local import PREFILL_TOKENS_PER_STEP

WEDGE = "hardening_wedge"
RELEASE = threading.Event()
STUCK = threading.Event()
"""Set when a call is blocked in the runtime."""
SLOW_STEP = 0.0
"""Seconds a batch step holding a ``dawdle`` member sleeps per unit of its watchdog allowance
(``1 + tokens / PREFILL_TOKENS_PER_STEP``) before decoding; set by a test."""


def _stuck(_input_ids: Any, scores: Any) -> Any:
    STUCK.set()
    RELEASE.wait()
    return scores


class WedgingLlama(LlamaCppModel):
    """The real llama.cpp model; ``wedge`` in the prompt blocks its first sampling step."""

    def completion_kwargs(self, request: ChatRequest | TextRequest) -> dict[str, Any]:
        kwargs = super().completion_kwargs(request)
        if isinstance(request, ChatRequest) and "wedge" in request.messages[-1].content:
            from llama_cpp import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList([_stuck])
        return kwargs


class WedgingDecode:
    """llama-cpp-python's module for one engine, with a ``llama_decode`` that hangs (``wedge``) or
    dawdles (``dawdle``) when a member of the step asks for it (``engine.marks``)."""

    def __init__(self, lib: Any, engine: WedgingSlotEngine) -> None:
        self.lib = lib
        self.engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lib, name)

    def llama_decode(self, ctx: Any, batch: Any) -> int:
        marks = {self.engine.marks.get(id(s.job)) for s in self.engine.slots if s.job is not None}
        if "wedge" in marks:
            STUCK.set()
            RELEASE.wait()
        elif "dawdle" in marks:
            time.sleep(SLOW_STEP * (1 + int(batch.n_tokens) / PREFILL_TOKENS_PER_STEP))
        return self.lib.llama_decode(ctx, batch)


class WedgingSlotEngine(SlotEngine):
    """The real parallel slots; a step holding a ``wedge`` member blocks in ``llama_decode``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.marks: dict[int, str] = {}
        """``wedge`` or ``dawdle`` by ``id(job)``, read from each submitted prompt."""
        self.llama_cpp = WedgingDecode(self.llama_cpp, self)

    def submit(self, job: SlotJob) -> SlotJob:
        text = self.llm.detokenize(job.prompt).decode("utf-8", errors="replace")
        for mark in ("wedge", "dawdle"):
            if mark in text:
                self.marks[id(job)] = mark
        return super().submit(job)


class WedgeProvider(LlamaCppProvider):
    name = WEDGE
    label = "llama.cpp that can hang (watchdog tests)"
    model_class = WedgingLlama
    engine_class = WedgingSlotEngine


def register() -> None:
    """Make rows with provider ``hardening_wedge`` load :class:`WedgingLlama`."""
    providers.PROVIDER_PATHS[WEDGE] = "tests.hardening.wedge:WedgeProvider"


if __name__ == "__main__":
    from app.cli import main

    register()
    sys.exit(main(sys.argv[1:]))
