"""Tools and structured output for MLX and Transformers, constrained with llguidance.

Engine choice: **llguidance** (Microsoft's Rust grammar engine).  Its wheel is small (3 MB),
abi3 (one wheel for every Python), has no dependencies, and computes a token bitmask from
any Hugging Face tokenizer, which we apply to the logits ourselves, so the same code serves
torch and MLX on Linux CPU and macOS (its bundled MLX helper needs Metal; we do not use it).
It refuses schema keywords it cannot enforce ("Unimplemented keys"), which we turn into a
400 naming them.  xgrammar needs torch and triton on Linux; outlines pulls a large stack.

A :class:`LocalPlan` is built per request:

- ``response_format`` json_object / json_schema, or ``tool_choice`` ``required`` / a named
  function -> a grammar; :meth:`LocalPlan.torch_sampler` and :meth:`LocalPlan.mlx_processor`
  mask every step's logits to the tokens the grammar allows (EOS once it is complete);
- tools (any choice but ``none``) -> the reply is read by
  :class:`~app.providers.toolcalls.ToolCallParser` (:meth:`LocalPlan.wrap`), so calls the
  model writes (Hermes ``<tool_call>`` or bare JSON) become OpenAI tool-call deltas;
  ``auto`` leaves the model free to answer in text or call.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

from app.providers.base import ChatChunk, ChatRequest, UnsupportedError
from app.providers.toolcalls import TOOL_CLOSE, TOOL_OPEN, ToolCallParser, validate_tool_choice

COMPACT = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}
"""JSON layout inside grammars: single spaces, no newlines (small models wander otherwise)."""

INSTALL_HINT = "structured output on this runtime needs llguidance: pip install llguidance==1.9.1"


@functools.lru_cache(maxsize=8)
def _ll_tokenizer(tokenizer: Any, eos: tuple[int, ...]) -> Any:
    import llguidance.hf

    return llguidance.hf.from_tokenizer(tokenizer, eos_token=list(eos) or None)


SAFE_INT = 2**53 - 1


def bounded_integers(node: Any) -> Any:
    """The schema with unbounded integers capped at +-(2**53 - 1).

    JSON clients lose precision past that anyway, and llama.cpp's grammars cap integers at
    16 digits too; without a bound a weak model can write digits until max_tokens."""
    if isinstance(node, list):
        return [bounded_integers(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: bounded_integers(v) for k, v in node.items()}
    kinds = out.get("type") if isinstance(out.get("type"), list) else [out.get("type")]
    if "integer" in kinds:
        if "minimum" not in out and "exclusiveMinimum" not in out:
            out["minimum"] = -SAFE_INT
        if "maximum" not in out and "exclusiveMaximum" not in out:
            out["maximum"] = SAFE_INT
    return out


def _lark_literal(text: str) -> str:
    return json.dumps(text)


def tool_call_lark(tools: list[dict[str, Any]], *, multiple: bool) -> str:
    """A Lark grammar (llguidance dialect) for Hermes-style calls of ``tools``."""
    lines, alts = [], []
    for i, tool in enumerate(tools):
        fn = tool["function"]
        head = _lark_literal(f'{TOOL_OPEN}\n{{"name": {json.dumps(fn["name"])}, "arguments": ')
        lines.append(f"call{i}: {head} args{i} {_lark_literal('}' + chr(10) + TOOL_CLOSE)}")
        schema = {**bounded_integers(fn.get("parameters") or {"type": "object"}),
                  "x-guidance": COMPACT}
        lines.append(f"args{i}: %json {json.dumps(schema)}")
        alts.append(f"call{i}")
    start = "call (\"\\n\" call)*" if multiple else "call"
    return "\n".join([f"start: {start}", f"call: {' | '.join(alts)}", *lines])


class Constraint:
    """An llguidance matcher over one tokenizer: masks logits, follows sampled tokens."""

    def __init__(self, tokenizer: Any, eos: tuple[int, ...], kind: str, grammar: Any,
                 param: str) -> None:
        try:
            import llguidance
        except ImportError as exc:
            raise UnsupportedError(INSTALL_HINT, param=param) from exc
        self.lltok = _ll_tokenizer(tokenizer, eos)
        source = (llguidance.LLMatcher.grammar_from_json_schema(
            bounded_integers(grammar), defaults=COMPACT)
            if kind == "json" else llguidance.grammar_from("lark", grammar))
        self.matcher = llguidance.LLMatcher(self.lltok, source)
        if self.matcher.is_error():
            raise UnsupportedError(f"{param} cannot be enforced on this model: "
                                   f"{self.matcher.get_error()}", param=param)
        self.vocab = int(self.lltok.vocab_size)

    def allowed(self) -> Any:
        """A boolean numpy mask of the tokens allowed next."""
        import llguidance.numpy as lnp
        import numpy as np

        bitmask = lnp.allocate_token_bitmask(1, self.vocab)
        lnp.fill_next_token_bitmask(self.matcher, bitmask, 0)
        return np.unpackbits(bitmask[0].view(np.uint8), bitorder="little")[: self.vocab].astype(bool)

    def consume(self, token: int) -> None:
        if not self.matcher.consume_token(int(token)):
            raise RuntimeError(f"grammar rejected token {token}: {self.matcher.get_error()}")


class LocalPlan:
    """How one request is constrained and parsed (see the module docstring)."""

    def __init__(self, constraint: Constraint | None, parse_tools: bool) -> None:
        self.constraint = constraint
        self.parse_tools = parse_tools

    @classmethod
    def build(cls, request: ChatRequest, tokenizer: Any, eos_ids: set[int]) -> LocalPlan:
        """Validate tools / tool_choice / response_format (400s) and make the constraint.

        A complete grammar allows only the model's end tokens (``eos_ids``) next."""
        eos = tuple(sorted(eos_ids))
        mode = validate_tool_choice(request.tools, request.tool_choice)
        tools = request.tools or []
        fmt = request.response_format or {}
        if tools and mode not in ("none", "auto"):
            chosen = tools
            if mode.startswith("function:"):
                chosen = [t for t in tools if t["function"]["name"] == mode.split(":", 1)[1]]
            multiple = request.parallel_tool_calls is not False and not mode.startswith("function:")
            grammar = tool_call_lark(chosen, multiple=multiple)
            return cls(Constraint(tokenizer, eos, "lark", grammar, "tools"), True)
        constraint = None
        if fmt.get("type") == "json_object":
            constraint = Constraint(tokenizer, eos, "json", fmt.get("schema") or {"type": "object"},
                                    "response_format")
        elif fmt.get("type") == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema")
            if schema is None:
                raise UnsupportedError("response_format json_schema needs json_schema.schema",
                                       param="response_format")
            constraint = Constraint(tokenizer, eos, "json", schema, "response_format")
        return cls(constraint, bool(tools) and mode != "none")

    def torch_sampler(self, sampler: Any) -> Any:
        """``sampler`` with every pick masked by the grammar (Transformers)."""
        return sampler if self.constraint is None else _MaskedSampler(sampler, self.constraint)

    def mlx_processor(self, prompt_len: int) -> Any:
        """An mlx-lm logits processor masking by the grammar, or None."""
        constraint = self.constraint
        if constraint is None:
            return None
        seen = [prompt_len]

        def process(tokens: Any, logits: Any) -> Any:
            import mlx.core as mx

            n = int(tokens.shape[-1])
            for t in tokens.reshape(-1)[seen[0]:n].tolist():
                constraint.consume(int(t))
            seen[0] = n
            mask = constraint.allowed()
            width = logits.shape[-1]
            full = mask if width <= mask.shape[0] else _pad(mask, width)
            return mx.where(mx.array(full[:width]), logits, -float("inf"))

        return process

    def wrap(self, chunks: Iterator[ChatChunk], parser: Any = None) -> Iterator[ChatChunk]:
        """Turn tool calls in the text into tool-call deltas (finish_reason ``tool_calls``);
        ``parser`` reads the model's own call format (default: Hermes, ToolCallParser)."""
        if not self.parse_tools:
            yield from chunks
            return
        parser = parser or ToolCallParser()
        for chunk in chunks:
            text, calls = parser.feed(chunk.text) if chunk.text else ("", [])
            calls = (chunk.tool_calls or []) + calls  # e.g. harmony calls, split out earlier
            if chunk.finish_reason:
                rest, more = parser.finish()
                text, calls = text + rest, calls + more
                finish = "tool_calls" if parser.calls and chunk.finish_reason == "stop" \
                    else chunk.finish_reason
                yield ChatChunk(text=text, tool_calls=calls or None, finish_reason=finish,
                                usage=chunk.usage, logprobs=chunk.logprobs,
                                reasoning=chunk.reasoning)
            elif text or calls or chunk.logprobs or chunk.reasoning:  # reasoning passes untouched
                yield ChatChunk(text=text, tool_calls=calls or None, logprobs=chunk.logprobs,
                                reasoning=chunk.reasoning)


def _pad(mask: Any, width: int) -> Any:
    import numpy as np

    out = np.zeros(width, dtype=bool)
    out[: mask.shape[0]] = mask
    return out


class _MaskedSampler:
    """Wraps a Transformers ``_Sampler``: mask, pick, then advance the grammar."""

    def __init__(self, sampler: Any, constraint: Constraint) -> None:
        self.sampler = sampler
        self.constraint = constraint

    def pick(self, logits: Any) -> int:
        import torch

        mask = torch.from_numpy(self.constraint.allowed())
        width = logits.shape[-1]
        allowed = torch.zeros(width, dtype=torch.bool)
        n = min(width, mask.shape[0])
        allowed[:n] = mask[:n]
        masked = logits.masked_fill(~allowed.to(logits.device), float("-inf"))
        token = self.sampler.pick(masked)
        self.constraint.consume(token)
        return token
