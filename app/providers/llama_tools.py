"""llama.cpp generation with tools, tool history or a ``response_format``.

llama-cpp-python ignores ``tool_choice="auto"`` and OpenAI's ``json_schema`` format, falls
back to unconstrained JSON when a schema does not convert, and cannot stream a forced tool
call in OpenAI's shape.  So these requests are rendered and constrained here:

- the prompt goes through the model's own chat template (tools and tool history included;
  see :func:`app.providers.toolcalls.prepare_messages` for templates without tool support);
- a GBNF grammar (:mod:`app.providers.grammar`) makes ``required`` / a named function always
  produce a valid Hermes-style call for the tool's schema, lets ``auto`` choose between such a
  call and plain text, and makes ``json_object`` / ``json_schema`` output valid JSON for it;
- :class:`~app.providers.toolcalls.ToolCallParser` streams the calls as OpenAI deltas.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.providers.base import ChatChunk, ChatMessage, ChatRequest, UnsupportedError
from app.providers.grammar import gbnf_for_schema, gbnf_for_tool_calls, response_format_schema
from app.providers.reasoning import (
    budget_thinking,
    close_marker,
    split_reasoning,
    template_switches,
)
from app.providers.toolcalls import (
    new_call_id,
    prepare_messages,
    template_supports_tools,
    validate_tool_choice,
)
from app.providers.toolformats import HERMES, detect_tool_format, parse_tool_chunks, parser_for

if TYPE_CHECKING:
    from app.providers.llama_cpp import LlamaCppModel


def needs_plan(request: ChatRequest) -> bool:
    """True when the stock chat path would drop or mishandle part of the request."""
    fmt = (request.response_format or {}).get("type")
    return bool(request.tools) or fmt not in (None, "text") or any(
        m.tool_calls or m.role == "tool" for m in request.messages)


@dataclass
class Plan:
    """What to render and how to constrain it."""

    tools: list[dict[str, Any]] | None
    mode: str | None  # none | auto | required | function:<name>
    grammar: str | None

    @property
    def calls_tools(self) -> bool:
        return self.mode not in (None, "none")


def make_plan(request: ChatRequest, *, constrain_auto: bool = True) -> Plan:
    """Validate tools / tool_choice / response_format (400s) and build the grammar.

    ``constrain_auto=False`` leaves ``auto`` free (a model that thinks first, or writes calls
    in another family's format, cannot follow the Hermes grammar)."""
    mode = validate_tool_choice(request.tools, request.tool_choice)
    schema = response_format_schema(request.response_format)
    tools = request.tools or None
    if not tools or mode == "none":
        return Plan(tools, mode, gbnf_for_schema(schema) if schema is not None else None)
    chosen = tools
    if mode.startswith("function:"):
        name = mode.split(":", 1)[1]
        chosen = [t for t in tools if t["function"]["name"] == name]
    multiple = request.parallel_tool_calls is not False and not mode.startswith("function:")
    if mode == "auto" and schema is None and not constrain_auto:
        return Plan(tools, mode, None)
    if mode == "auto" and schema is not None:
        # Either calls, or an answer in the requested JSON shape.
        calls = gbnf_for_tool_calls(chosen, multiple=multiple, allow_text=False)
        answer = gbnf_for_schema(schema).replace("root ::=", "answer ::=", 1)
        grammar = calls.replace("root ::=", "calls ::=", 1) + "\n" + answer + \
            "\nroot ::= calls | answer"
        return Plan(tools, mode, grammar)
    grammar = gbnf_for_tool_calls(chosen, multiple=multiple, allow_text=mode == "auto")
    return Plan(tools, mode, grammar)


def render(model: LlamaCppModel, messages: list[ChatMessage],
           tools: list[dict[str, Any]] | None, switches: dict[str, Any] | None = None) -> Any:
    """The formatter's response (prompt, added_special, stop, stopping_criteria).

    ``switches`` are extra template variables (reasoning: ``enable_thinking`` ...)."""
    if model.formatter is None:
        raise UnsupportedError(f"model {model.model_id} has no known chat template, so tools, "
                               "tool history and response_format cannot be rendered; set the "
                               "row's chat_template option")
    native = template_supports_tools(getattr(model.formatter, "template", None))
    dicts = prepare_messages(messages, tools, native)
    return model.formatter(messages=dicts, tools=tools if native else None, **(switches or {}))


def generate_planned(model: LlamaCppModel, request: ChatRequest,
                     cancelled: threading.Event) -> Iterator[ChatChunk]:
    """Render, constrain, generate and parse one request (runs under the model's lock)."""
    from llama_cpp.llama_grammar import LlamaGrammar

    template = getattr(model.formatter, "template", None)
    tool_format = detect_tool_format(template)
    plan = make_plan(request, constrain_auto=model.reasoning is None and tool_format is HERMES)
    kwargs = model.completion_kwargs(request)
    result = render(model, request.messages, plan.tools,
                    template_switches(template, request.reasoning_effort))
    llm = model._require_llm()
    tokens = llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special,
                          special=True)
    stops = list(kwargs.pop("stop") or [])
    top = kwargs.pop("top_logprobs", 0)
    if kwargs.pop("logprobs", False):
        kwargs["logprobs"] = top
    if result.stop:
        stops += [result.stop] if isinstance(result.stop, str) else list(result.stop)
    grammar = LlamaGrammar.from_string(plan.grammar, verbose=False) if plan.grammar else None

    def run(extra: str) -> Iterator[ChatChunk]:
        """Generate from the prompt; with ``extra``, go on from the last run's tokens + ``extra``
        (a thinking budget's continuation, see budget_thinking)."""
        more = [*llm.last_tokens, *llm.tokenize(extra.encode("utf-8"), add_bos=False,
                                                special=True)] if extra else []
        limit = kwargs["max_tokens"]
        stream = llm.create_completion(
            prompt=tokens + more, stream=True, stop=stops, grammar=grammar,
            stopping_criteria=result.stopping_criteria,
            **{**kwargs, "max_tokens": max(1, limit - len(more)) if limit else limit})
        return _raw_chunks(model, stream, cancelled)

    close = close_marker(model.reasoning) if model.reasoning is not None else None
    if close is not None and request.thinking_budget is not None and model.reasoning is not None:
        chunks = budget_thinking(run, model.reasoning.splitter(result.prompt),
                                 request.thinking_budget, close, len(tokens))
    else:
        chunks = run("")
    if model.reasoning is not None:  # reasoning first: a call written while thinking is not one
        chunks = split_reasoning(chunks, model.reasoning.splitter(result.prompt), new_call_id)
    if plan.calls_tools:
        # A bare JSON reply is a call only in formats that write calls that way (Llama 3.x).
        chunks = parse_tool_chunks(chunks, parser_for(request, tool_format,
                                                      bare_json=tool_format is not HERMES))
    yield from chunks


def _raw_chunks(model: LlamaCppModel, stream: Any, cancelled: threading.Event) -> Iterator[ChatChunk]:
    """The runtime's text deltas, then a last chunk with finish_reason and usage."""
    finish = None
    try:
        for chunk in stream:
            if cancelled.is_set():
                return
            choice = chunk["choices"][0]
            finish = choice.get("finish_reason") or finish
            text = choice.get("text") or ""
            logprobs = _chat_logprobs(choice.get("logprobs"))
            if text or logprobs:
                yield ChatChunk(text=text, logprobs=logprobs)
    finally:
        stream.close()
    if not cancelled.is_set():
        yield ChatChunk(finish_reason=finish or "stop", usage=model.last_usage())


def _chat_logprobs(raw: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """Completion-style logprobs -> chat ``logprobs.content`` entries."""
    from app.providers.llama_cpp import chat_logprobs
    from app.providers.llama_text import logprob_entries

    entries = logprob_entries(raw)
    if not entries:
        return None
    return chat_logprobs([{"token": e["token"], "logprob": e["logprob"], "top_logprobs": [
        {"token": t, "logprob": lp} for t, lp in (e["top_logprobs"] or {}).items()]}
        for e in entries])
