"""Chat requests on a llama.cpp model's parallel slots (:mod:`app.providers.llama_slots`).

Which requests join the batch (:func:`batchable`) and which run alone on the high-level
``Llama``, by this rule: a request runs alone when it asks for logprobs (the slots keep only
the sampled row's logits), when it has a thinking budget on a reasoning model (its
continuation re-enters the high-level generator), when the model has no known chat template,
or when its prompt does not fit a slot's context (the ``parallel_ctx`` option). Everything
else is batched: plain chat, and tools, tool history, ``response_format`` and reasoning
(rendered, constrained by llguidance per member and parsed as on the high-level path:
:func:`app.providers.llama_tools.generate_planned` with the slots as its runner).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from app.providers.base import ChatChunk, ChatRequest, ProviderError, Usage
from app.providers.batch_jobs import SlotJob
from app.providers.llama_sampling import LogitsProcessor, SamplingParams, SlotSampler
from app.providers.llama_tools import generate_planned, needs_plan
from app.providers.textstream import GenerationEnd, chat_chunks, token_steps

if TYPE_CHECKING:
    from app.providers.llama_cpp import LlamaCppModel


def planned(model: LlamaCppModel, request: ChatRequest) -> bool:
    """Whether the request is rendered, constrained and parsed by the planned path."""
    return needs_plan(request) or model.reasoning is not None or bool(request.reasoning_effort)


def runs_alone(model: LlamaCppModel, request: ChatRequest) -> bool:
    """Whether the request's features keep it off the slots (see the module docstring)."""
    return (model.engine is None or bool(request.logprobs) or model.formatter is None
            or (model.reasoning is not None and request.thinking_budget is not None))


def batchable(model: LlamaCppModel, request: ChatRequest) -> bool:
    """Whether ``request`` goes to the slots (else it runs alone on the high-level path)."""
    if runs_alone(model, request):
        return False
    assert model.engine is not None
    return model.engine.fits(model.prompt_tokens(request.messages, request.tools or None))


def sampling_params(model: LlamaCppModel, request: ChatRequest) -> SamplingParams:
    """The request's sampler settings, with the row's defaults for llama.cpp's own knobs."""
    knobs = {k: request.extra.get(k, v) for k, v in model.sampler_defaults.items()}
    bias = request.logit_bias or {}
    return SamplingParams(
        temperature=request.temperature, top_p=request.top_p,
        top_k=int(knobs.get("top_k", 40)), min_p=float(knobs.get("min_p", 0.05)),
        repeat_penalty=float(knobs.get("repeat_penalty", 1.0)),
        presence_penalty=request.presence_penalty, frequency_penalty=request.frequency_penalty,
        seed=request.seed if request.seed is not None else secrets.randbits(31),
        logit_bias={int(k): float(v) for k, v in bias.items()})


def template_stops(model: LlamaCppModel, request: ChatRequest) -> list[str]:
    """Stop strings: the request's and the chat format's own."""
    stop = model.render(request.messages, None).stop
    extra = [stop] if isinstance(stop, str) else list(stop or [])
    return list(request.stop) + extra


def generate_on_slots(model: LlamaCppModel, request: ChatRequest,
                      cancelled: threading.Event) -> Iterator[ChatChunk]:
    """Blocking chat deltas for a batched request (runs on the request's own thread)."""
    if request.max_tokens is not None and request.max_tokens < 1:
        raise ProviderError("max_tokens must be at least 1", status=400,
                            code="invalid_value", param="max_tokens")

    def run(prompt: list[int], stops: list[str], processor: LogitsProcessor | None) -> Iterator[ChatChunk]:
        return slot_chunks(model, request, prompt, stops, processor, cancelled)

    if planned(model, request):
        yield from generate_planned(model, request, cancelled, slots=run)
    else:
        yield from run(model.prompt_tokens(request.messages), template_stops(model, request), None)


def slot_chunks(model: LlamaCppModel, request: ChatRequest, prompt: list[int], stops: list[str],
                processor: LogitsProcessor | None,
                cancelled: threading.Event) -> Iterator[ChatChunk]:
    """Text deltas of one member, then a last chunk with finish_reason and usage (cached tokens too)."""
    engine, llm = model.engine, model.llm
    if engine is None or llm is None:
        raise ProviderError(f"model {model.model_id} has been unloaded", status=503,
                            code="model_unloaded")
    if not engine.fits(prompt):
        raise ProviderError(f"The prompt is {len(prompt)} tokens long, but a parallel slot of this "
                            f"model holds {engine.slot_ctx} tokens (the row's parallel_ctx option).",
                            status=400, code="context_length_exceeded", param="messages")
    params = sampling_params(model, request)
    params.processor = processor
    job = engine.submit(SlotJob(prompt=prompt, sampler=SlotSampler(params),
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

    steps = token_steps(counted(), decode, stops, cancelled, end)
    yield from chat_chunks(steps, end, None)
