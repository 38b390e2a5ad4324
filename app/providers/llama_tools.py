"""llama.cpp generation with tools, tool history, a ``response_format`` or reasoning.

llama-cpp-python ignores ``tool_choice="auto"`` and OpenAI's ``json_schema`` format, and
cannot stream a forced tool call in OpenAI's shape.  So these requests are rendered and
constrained here:

- the prompt goes through the model's own chat template (tools and tool history included;
  see :func:`app.providers.toolcalls.prepare_messages` for templates without tool support),
  with the template's reasoning switches (``enable_thinking`` ...);
- the constraint is llguidance's, as on every local runtime
  (:class:`~app.providers.local_structured.LocalPlan`), applied through llama-cpp-python's
  ``logits_processor``; ``auto`` is constrained (calls or text) only for Hermes-format
  models that do not think first;
- reasoning is split out (:mod:`app.providers.reasoning`, with a thinking budget), then the
  calls are parsed in the model family's format (:mod:`app.providers.toolformats`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from app.providers.base import ChatChunk, ChatMessage, ChatRequest, Usage
from app.providers.llama_run import end_of_generation_tokens, stream_choices
from app.providers.local_structured import LocalPlan
from app.providers.logprobs import completion_to_chat_logprobs
from app.providers.reasoning import (
    ReasoningFormat,
    budget_thinking,
    close_marker,
    split_reasoning,
    template_switches,
)
from app.providers.toolcalls import new_call_id
from app.providers.toolformats import HERMES, detect_tool_format, parser_for


class PlannedModel(Protocol):
    """What planned generation needs of a llama.cpp model (``LlamaCppModel``)."""

    formatter: Callable[..., Any] | None
    reasoning: ReasoningFormat | None

    def require_llm(self) -> Any: ...
    def lltokenizer(self) -> Any: ...
    def completion_kwargs(self, request: ChatRequest) -> dict[str, Any]: ...
    def render(self, messages: list[ChatMessage], tools: list[dict[str, Any]] | None,
               switches: dict[str, Any] | None = None) -> Any: ...
    def last_usage(self) -> Usage: ...
    def last_stop(self, stops: list[str]) -> str | None: ...


def needs_plan(request: ChatRequest) -> bool:
    """True when the stock chat path would drop or mishandle part of the request."""
    fmt = (request.response_format or {}).get("type")
    return bool(request.tools) or fmt not in (None, "text") or any(
        m.tool_calls or m.role == "tool" for m in request.messages)


SlotRunner = Callable[[list[int], list[str], "Callable[[Any, Any], Any] | None"], Iterator[ChatChunk]]
"""Generates on the model's parallel slots: ``(prompt tokens, stops, logits processor)`` ->
text deltas and a last chunk with finish_reason and usage (``app.providers.llama_parallel``)."""


def generate_planned(model: PlannedModel, request: ChatRequest, cancelled: threading.Event,
                     slots: SlotRunner | None = None) -> Iterator[ChatChunk]:
    """Render, constrain, generate and parse one request: under the model's lock on the
    high-level ``Llama``, or in a batch on the parallel ``slots`` (a thinking budget's
    continuation needs the high-level path: such requests never come with ``slots``)."""
    template = getattr(model.formatter, "template", None)
    tool_format = detect_tool_format(template)
    plan = LocalPlan.make(request, model.lltokenizer, bare_json=False,
                          constrain_auto=model.reasoning is None and tool_format is HERMES)
    kwargs = model.completion_kwargs(request)
    result = model.render(request.messages, request.tools or None,
                          template_switches(template, request.reasoning_effort))
    llm = model.require_llm()
    tokens = llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special,
                          special=True)
    stops = list(kwargs.pop("stop") or [])
    top = kwargs.pop("top_logprobs", 0)
    if kwargs.pop("logprobs", False):
        kwargs["logprobs"] = top
    if result.stop:
        stops += [result.stop] if isinstance(result.stop, str) else list(result.stop)
    processor = plan.llama_processor(end_of_generation_tokens(llm))
    if processor is not None:
        import llama_cpp

        kwargs["logits_processor"] = llama_cpp.LogitsProcessorList([processor])

    def run(extra: str) -> Iterator[ChatChunk]:
        """Generate from the prompt; with ``extra``, go on from the last run's tokens + ``extra``
        (a thinking budget's continuation, see budget_thinking)."""
        if slots is not None and not extra:
            return _checked(plan, slots(list(tokens), stops, processor))
        more = [*llm.last_tokens, *llm.tokenize(extra.encode("utf-8"), add_bos=False,
                                                special=True)] if extra else []
        limit = kwargs["max_tokens"]
        call = {**kwargs, "max_tokens": max(1, limit - len(more)) if limit else limit}
        return _raw_chunks(model, plan, lambda: llm.create_completion(
            prompt=tokens + more, stream=True, stop=stops,
            stopping_criteria=result.stopping_criteria, **call), cancelled, stops)

    close = close_marker(model.reasoning) if model.reasoning is not None else None
    if close is not None and request.thinking_budget is not None and model.reasoning is not None:
        chunks = budget_thinking(run, model.reasoning.splitter(result.prompt),
                                 request.thinking_budget, close, len(tokens))
    else:
        chunks = run("")
    if model.reasoning is not None:  # reasoning first: a call written while thinking is not one
        chunks = split_reasoning(chunks, model.reasoning.splitter(result.prompt), new_call_id)
    # A bare JSON reply is a call only in formats that write calls that way (Llama 3.x).
    parser = parser_for(request, tool_format, bare_json=tool_format is not HERMES) \
        if plan.parse_tools else None
    yield from plan.wrap(chunks, parser)


def _checked(plan: LocalPlan, chunks: Iterator[ChatChunk]) -> Iterator[ChatChunk]:
    """``chunks``, with a constraint failure raised before the last chunk (as :func:`_raw_chunks`)."""
    for chunk in chunks:
        if chunk.finish_reason is not None:
            plan.raise_failure()
        yield chunk


def _raw_chunks(model: PlannedModel, plan: LocalPlan, start: Callable[[], Any],
                cancelled: threading.Event, stops: list[str]) -> Iterator[ChatChunk]:
    """The runtime's text deltas, then a last chunk with finish_reason, usage and the one of
    ``stops`` that ended the reply."""
    finish = None
    for choice in stream_choices(start, cancelled):
        finish = choice.get("finish_reason") or finish
        text = choice.get("text") or ""
        logprobs = completion_to_chat_logprobs(choice.get("logprobs"))
        if text or logprobs:
            yield ChatChunk(text=text, logprobs=logprobs)
    plan.raise_failure()
    if not cancelled.is_set():
        finish = finish or "stop"
        yield ChatChunk(finish_reason=finish, usage=model.last_usage(),
                        stop_sequence=model.last_stop(stops) if finish == "stop" else None)
