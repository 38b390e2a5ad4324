"""Chat requests on a llama.cpp model's parallel slots (:mod:`app.providers.llama_slots`).

Which requests join the batch (:func:`batchable`) and which run alone on the high-level
``Llama``, by this rule: a request runs alone when it asks for logprobs (the slots keep only
the sampled row's logits), has tools, tool history or a ``response_format`` (their constraint
and parsing run on the high-level path), the model has a reasoning format or the request a
``reasoning_effort`` (the reasoning splitter runs there too), or its prompt does not fit a
slot's context (the ``parallel_ctx`` option). Everything else is batched.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from app.providers.base import ChatChunk, ChatRequest, ProviderError, Usage
from app.providers.llama_sampling import SamplingParams, SlotSampler
from app.providers.llama_slots import SlotJob
from app.providers.textstream import GenerationEnd, chat_chunks, token_steps

if TYPE_CHECKING:
    from app.providers.llama_cpp import LlamaCppModel

DEFAULT_PARALLEL = 4
"""Slots per llama.cpp model unless the row's ``parallel`` option says otherwise (1: no slots)."""


def needs_high_level_path(model: LlamaCppModel, request: ChatRequest) -> bool:
    """Whether the request's features keep it off the slots (see the module docstring)."""
    from app.providers.llama_tools import needs_plan

    return (bool(request.logprobs) or needs_plan(request) or model.reasoning is not None
            or bool(request.reasoning_effort) or model.formatter is None)


def batchable(model: LlamaCppModel, request: ChatRequest) -> list[int] | None:
    """The prompt tokens when ``request`` goes to the slots, else None (it runs alone)."""
    engine = model.engine
    if engine is None or needs_high_level_path(model, request):
        return None
    tokens = model.prompt_tokens(request.messages)
    return tokens if engine.fits(tokens) else None


def sampling_params(model: LlamaCppModel, request: ChatRequest) -> SamplingParams:
    """The request's sampler settings, with the row's defaults for llama.cpp's own knobs."""
    knobs = {k: request.extra.get(k, v) for k, v in model.sampler_defaults.items()}
    bias = request.extra.get("logit_bias") or {}
    return SamplingParams(
        temperature=request.temperature, top_p=request.top_p,
        top_k=int(knobs.get("top_k", 40)), min_p=float(knobs.get("min_p", 0.05)),
        repeat_penalty=float(knobs.get("repeat_penalty", 1.0)),
        presence_penalty=request.presence_penalty, frequency_penalty=request.frequency_penalty,
        seed=request.seed if request.seed is not None else secrets.randbits(31),
        logit_bias={int(k): float(v) for k, v in bias.items()})


def template_stops(model: LlamaCppModel, request: ChatRequest) -> list[str]:
    """Stop strings: the request's and the chat format's own."""
    from app.providers.llama_tools import render

    stop = render(model, request.messages, None).stop
    extra = [stop] if isinstance(stop, str) else list(stop or [])
    return list(request.stop) + extra


def generate_batched(model: LlamaCppModel, request: ChatRequest, prompt: list[int],
                     cancelled: threading.Event) -> Iterator[ChatChunk]:
    """Blocking chat deltas for a request on the slots (runs on the request's own thread)."""
    engine, llm = model.engine, model.llm
    assert engine is not None and llm is not None
    if request.max_tokens is not None and request.max_tokens < 1:
        raise ProviderError("max_tokens must be at least 1", status=400,
                            code="invalid_value", param="max_tokens")
    job = engine.submit(SlotJob(prompt=prompt, sampler=SlotSampler(sampling_params(model, request)),
                                max_tokens=request.max_tokens, cancelled=cancelled))
    end = GenerationEnd(Usage(prompt_tokens=len(prompt)))

    def decode(ids: Sequence[int]) -> str:
        return llm.detokenize(list(ids)).decode("utf-8", errors="replace")

    def counted() -> Iterator[tuple[int, Any, bool]]:
        tokens = job.tokens()
        try:
            for token, scores, eos in tokens:
                end.usage.cached_tokens = job.cached_tokens
                if not eos:
                    end.usage.completion_tokens += 1
                yield token, scores, eos
        finally:
            tokens.close()

    steps = token_steps(counted(), decode, template_stops(model, request), cancelled, end)
    yield from chat_chunks(steps, end, None)
