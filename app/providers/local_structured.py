"""Tools and structured output for every local runtime (llama.cpp, MLX, Transformers).

A :class:`LocalPlan` is built per request from its ``tools``, ``tool_choice`` and
``response_format``; the grammar engine is llguidance (:mod:`app.providers.constraints`):

- ``tool_choice`` ``required`` / a named function -> Hermes-style calls
  (``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``) whose arguments follow
  each tool's schema; a schema we refuse (:mod:`app.providers.schema_vet`) is a 400;
- ``response_format`` json_object / json_schema -> JSON valid for the schema (400 if refused);
- ``auto`` with a ``response_format`` -> either calls or the JSON answer;
- ``auto`` alone -> free text, or (``constrain_auto``, llama.cpp's behaviour) calls or text
  that does not start with ``<``.  Under ``auto`` a tool schema never causes a 400: a tool
  whose schema is refused gets any JSON object as arguments.

Each step's logits are masked to the tokens the grammar allows (EOS once it is complete):
:meth:`LocalPlan.torch_sampler` (Transformers), :meth:`LocalPlan.mlx_processor`,
:meth:`LocalPlan.llama_processor`.  :meth:`LocalPlan.wrap` turns calls in the text into
OpenAI tool-call deltas and, where the grammar enforced less than the schema (a keyword
llguidance cannot enforce), checks the finished reply; a reply that breaks its schema ends
in OpenAI's "model produced invalid content" error (500, which the SDKs retry).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from typing import Any

from app.providers import schema_limits as limits
from app.providers.base import (
    ChatChunk,
    ChatRequest,
    ProviderError,
    ToolCallDelta,
    UnsupportedError,
)
from app.providers.constraints import (
    COMPACT,
    Matcher,
    OutputCheck,
    SchemaGrammar,
    invalid_output,
    json_source,
    lark_json,
    schema_grammar,
)
from app.providers.schema_vet import SchemaRejected, vet_schema
from app.providers.toolcalls import TOOL_CLOSE, TOOL_OPEN, ToolCallParser, validate_tool_choice
from app.providers.toolformats import parse_tool_chunks

__all__ = ["COMPACT", "LocalPlan", "response_format_schema", "tool_call_lark", "vet_request"]

ANY_OBJECT: dict[str, Any] = {"type": "object"}


@functools.lru_cache(maxsize=8)
def hf_lltokenizer(tokenizer: Any, eos: tuple[int, ...]) -> Any:
    """llguidance's tokenizer for a Hugging Face tokenizer (cached)."""
    import llguidance.hf

    return llguidance.hf.from_tokenizer(tokenizer, eos_token=list(eos) or None)


def response_format_schema(fmt: dict[str, Any] | None) -> Any:
    """The schema a ``response_format`` asks for, or None for free text (400 if malformed).

    ``json_object`` means "any JSON object"; ``json_schema`` needs ``json_schema.schema``;
    llama-cpp-python's own ``{"type": "json_object", "schema": ...}`` is honoured too.
    """
    if not fmt:
        return None
    kind = fmt.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return fmt.get("schema") or ANY_OBJECT
    if kind == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema is None:
            raise UnsupportedError("response_format json_schema needs json_schema.schema",
                                   param="response_format")
        return schema
    raise UnsupportedError(f"response_format type {kind!r} is not supported (use text, "
                           "json_object or json_schema)", param="response_format.type")


def _lark_literal(text: str) -> str:
    return json.dumps(text)


def tool_call_lark(tools: list[dict[str, Any]], *, multiple: bool,
                   grammars: list[SchemaGrammar] | None = None, tail: str | None = None) -> str:
    """A Lark grammar (llguidance dialect) for Hermes-style calls of ``tools``.

    ``grammars``: each tool's prepared schema (default: its ``parameters`` as given);
    ``tail``: ``"text"`` (or free text not starting with ``<``) or a ``%json`` rule body for
    a JSON answer, as the alternative to calling.
    """
    from app.providers.constraints import JSON_OPTIONS, bounded_integers

    lines, alts = [], []
    for i, tool in enumerate(tools):
        fn = tool["function"]
        head = _lark_literal(f'{TOOL_OPEN}\n{{"name": {json.dumps(fn["name"])}, "arguments": ')
        lines.append(f"call{i}: {head} args{i} {_lark_literal('}' + chr(10) + TOOL_CLOSE)}")
        if grammars is not None:
            lines.append(f"args{i}: {lark_json(grammars[i])}")
        else:
            schema = {**bounded_integers(fn.get("parameters") or ANY_OBJECT),
                      "x-guidance": JSON_OPTIONS}
            lines.append(f"args{i}: %json {json.dumps(schema)}")
        alts.append(f"call{i}")
    calls = "call (\"\\n\" call)*" if multiple else "call"
    head = [f"start: {calls}", f"call: {' | '.join(alts)}"]
    if tail == "text":
        head = ["start: calls | text | \"\"", f"calls: {calls}", "text: /[^<](.|\\n)*/",
                f"call: {' | '.join(alts)}"]
    elif tail is not None:
        head = ["start: calls | answer", f"calls: {calls}", f"answer: {tail}",
                f"call: {' | '.join(alts)}"]
    return "\n".join([*head, *lines])


def vet_request(request: ChatRequest) -> str:
    """The checks of :meth:`LocalPlan.make` that need no tokenizer: ``tool_choice``, the tool
    count, and every schema the reply must follow (400s); returns the tool-choice mode."""
    mode = _tool_mode(request)
    tools = request.tools or []
    schema = response_format_schema(request.response_format)
    if schema is not None:
        _vet(schema, "response_format", "")
    if tools and mode != "none" and mode != "auto":
        for i, tool in enumerate(tools):
            if mode == "required" or mode == f"function:{tool['function']['name']}":
                _vet(tool["function"].get("parameters") or ANY_OBJECT, "tools",
                     f"tools[{i}].function.parameters")
    return mode


def _tool_mode(request: ChatRequest) -> str:
    mode = validate_tool_choice(request.tools, request.tool_choice)
    if len(request.tools or []) > limits.MAX_TOOLS:
        raise SchemaRejected(f"{len(request.tools or [])} tools; the limit is {limits.MAX_TOOLS} "
                             "(MAX_TOOLS)", param="tools")
    return mode


def _vet(schema: Any, param: str, where: str) -> None:
    try:
        vet_schema(schema, param=param)
    except SchemaRejected as exc:
        raise SchemaRejected(f"{where}: {exc.message}" if where else exc.message,
                             param=param) from exc


def _prepare(schema: Any, param: str, where: str) -> SchemaGrammar:
    try:
        return schema_grammar(vet_schema(schema, param=param), param)
    except SchemaRejected as exc:
        raise SchemaRejected(f"{where}: {exc.message}" if where else exc.message,
                             param=param) from exc


def _lenient(schema: Any) -> SchemaGrammar:
    """A tool schema under ``auto``: refused ones become "any JSON object"."""
    try:
        return _prepare(schema, "tools", "")
    except SchemaRejected:
        return schema_grammar(vet_schema(ANY_OBJECT, param="tools"), "tools")


class LocalPlan:
    """How one request is constrained, parsed and checked (see the module docstring)."""

    def __init__(self, matcher: Matcher | None, parse_tools: bool, *, bare_json: bool = True,
                 tool_checks: dict[str, SchemaGrammar] | None = None,
                 answer_check: SchemaGrammar | None = None) -> None:
        self.matcher = matcher
        self.parse_tools = parse_tools
        self.bare_json = bare_json
        self.tool_checks = tool_checks or {}
        self.answer_check = answer_check
        self.failure: ProviderError | None = None

    @property
    def constraint(self) -> Matcher | None:
        """The matcher (None: unconstrained)."""
        return self.matcher

    @classmethod
    def build(cls, request: ChatRequest, tokenizer: Any, eos_ids: set[int]) -> LocalPlan:
        """The plan for a Hugging Face tokenizer (MLX, Transformers): ``auto`` left free."""
        eos = tuple(sorted(eos_ids))
        return cls.make(request, lambda: hf_lltokenizer(tokenizer, eos), constrain_auto=False)

    @classmethod
    def make(cls, request: ChatRequest, lltokenizer: Callable[[], Any], *,
             constrain_auto: bool, bare_json: bool = True) -> LocalPlan:
        """Validate tools / tool_choice / response_format (400s) and make the grammar.

        ``lltokenizer`` gives llguidance's tokenizer (only called when a grammar is needed).
        """
        mode = _tool_mode(request)
        tools = request.tools or []
        schema = response_format_schema(request.response_format)
        answer = _prepare(schema, "response_format", "") if schema is not None else None
        parse = bool(tools) and mode != "none"
        if not tools or mode == "none":
            if answer is None:
                return cls(None, parse, bare_json=bare_json)
            return cls(Matcher(lltokenizer(), json_source(answer), "response_format"), parse,
                       bare_json=bare_json, answer_check=answer)
        forced = mode != "auto"
        chosen = tools
        if mode.startswith("function:"):
            chosen = [t for t in tools if t["function"]["name"] == mode.split(":", 1)[1]]
        if forced:
            tail = None
        elif answer is not None:
            tail = lark_json(answer)
        elif constrain_auto:
            tail = "text"
        else:  # free text or calls, unconstrained: nothing was promised, nothing to check
            return cls(None, True, bare_json=bare_json)
        grammars = [
            _prepare(t["function"].get("parameters") or ANY_OBJECT, "tools",
                     f"tools[{tools.index(t)}].function.parameters")
            if forced else _lenient(t["function"].get("parameters") or ANY_OBJECT)
            for t in chosen]
        checks = {t["function"]["name"]: g for t, g in zip(chosen, grammars, strict=True)}
        multiple = request.parallel_tool_calls is not False and not mode.startswith("function:")
        lark = tool_call_lark(chosen, multiple=multiple, grammars=grammars, tail=tail)
        import llguidance

        matcher = Matcher(lltokenizer(), llguidance.grammar_from("lark", lark), "tools")
        return cls(matcher, True, bare_json=bare_json, tool_checks=checks, answer_check=answer)

    # -- masking ----------------------------------------------------------------------
    def torch_sampler(self, sampler: Any) -> Any:
        """``sampler`` with every pick masked by the grammar (Transformers)."""
        return sampler if self.matcher is None else _MaskedSampler(sampler, self.matcher)

    def mlx_processor(self, prompt_len: int) -> Any:
        """An mlx-lm logits processor masking by the grammar, or None."""
        matcher = self.matcher
        if matcher is None:
            return None
        seen = [prompt_len]

        def process(tokens: Any, logits: Any) -> Any:
            import mlx.core as mx

            n = int(tokens.shape[-1])
            for t in tokens.reshape(-1)[seen[0]:n].tolist():
                matcher.consume(int(t))
            seen[0] = n
            mask = _fit(matcher.allowed(int(mx.argmax(logits.reshape(-1)).item())),
                        logits.shape[-1])
            return mx.where(mx.array(mask), logits, -float("inf"))

        return process

    def llama_processor(self, end_tokens: list[int], *,
                        favour_top: bool = False) -> Callable[[Any, Any], Any] | None:
        """A llama-cpp-python logits processor masking by the grammar, or None.

        It is called with every token so far (the prompt first) and the next logits, from
        a C callback that swallows exceptions: a failure is kept (:meth:`raise_failure`)
        and the mask then allows only ``end_tokens``, so the generation ends at once.
        ``favour_top``: the row is the model's real logits (the parallel slots' sampler), so
        its top token is allowed where it spells forced text its own way (see
        :meth:`Matcher.allowed`).  Off on llama-cpp-python's own sampler (the high-level path):
        the row it hands over was seen to have another top token than the one it then picks."""
        matcher = self.matcher
        if matcher is None:
            return None
        seen: list[int] = []

        def process(input_ids: Any, scores: Any) -> Any:
            import numpy as np

            width = scores.shape[-1]
            try:
                if self.failure is not None:
                    raise self.failure
                n = len(input_ids)
                for t in input_ids[(seen[0] if seen else n):n]:
                    matcher.consume(int(t))
                seen[:] = [n]
                mask = _fit(matcher.allowed(int(np.argmax(scores)) if favour_top else None),
                            width)
            except ProviderError as exc:
                self.failure = exc
                mask = np.zeros(width, dtype=bool)
                mask[[t for t in end_tokens if t < width]] = True
            return np.where(mask, scores, -np.inf)

        return process

    def raise_failure(self) -> None:
        """Raise what went wrong inside :meth:`llama_processor`, if anything did."""
        if self.failure is not None:
            raise self.failure

    # -- reading the reply --------------------------------------------------------------
    def wrap(self, chunks: Iterator[ChatChunk], parser: Any = None) -> Iterator[ChatChunk]:
        """Turn tool calls in the text into tool-call deltas (finish_reason ``tool_calls``)
        and check a finished reply where the grammar enforced less than its schema.

        ``parser`` reads the model's own call format (default: Hermes,
        :class:`~app.providers.toolcalls.ToolCallParser`); reasoning passes untouched."""
        if self.parse_tools:
            chunks = parse_tool_chunks(chunks, parser or ToolCallParser(bare_json=self.bare_json))
        if not self.tool_checks and self.answer_check is None:
            yield from chunks
            return
        calls: dict[int, list[str]] = {}  # index -> [name, arguments]
        answer: list[str] = []
        for chunk in chunks:
            self._note(chunk.tool_calls or [], calls, answer, chunk.text)
            if chunk.finish_reason in ("stop", "tool_calls"):
                self._check(calls, "".join(answer))
            yield chunk

    @staticmethod
    def _note(found: list[ToolCallDelta], calls: dict[int, list[str]], answer: list[str],
              text: str) -> None:
        answer.append(text)
        for frag in found:
            entry = calls.setdefault(frag.index, ["", ""])
            entry[0] += frag.name or ""
            entry[1] += frag.arguments or ""

    def _check(self, calls: dict[int, list[str]], text: str) -> None:
        for name, arguments in calls.values():
            grammar = self.tool_checks.get(name)
            problem = OutputCheck(grammar).problem(arguments) if grammar else None
            if problem:
                raise invalid_output(f"arguments of {name}: {problem}", grammar.unenforced)
        if self.answer_check is not None and not calls:
            problem = OutputCheck(self.answer_check).problem(text)
            if problem:
                raise invalid_output(problem, self.answer_check.unenforced)


def _fit(mask: Any, width: int) -> Any:
    """``mask`` cut or padded (with False) to ``width`` logits."""
    import numpy as np

    if mask.shape[0] >= width:
        return mask[:width]
    out = np.zeros(width, dtype=bool)
    out[: mask.shape[0]] = mask
    return out


class _MaskedSampler:
    """Wraps a Transformers ``_Sampler``: mask, pick, then advance the grammar."""

    def __init__(self, sampler: Any, matcher: Matcher) -> None:
        self.sampler = sampler
        self.matcher = matcher

    def pick(self, logits: Any) -> int:
        import torch

        favourite = int(torch.argmax(logits.reshape(-1)).item())
        allowed = torch.from_numpy(_fit(self.matcher.allowed(favourite), logits.shape[-1]))
        masked = logits.masked_fill(~allowed.to(logits.device), float("-inf"))
        token = self.sampler.pick(masked)
        self.matcher.consume(token)
        return token
