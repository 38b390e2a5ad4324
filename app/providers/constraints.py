"""The constraint engine of every local runtime: llguidance grammars and token masks.

Engine choice: **llguidance** (Microsoft's Rust grammar engine).  Its wheel is small (3 MB),
abi3, has no dependencies, builds a tokenizer from a Hugging Face tokenizer
(``llguidance.hf``) or from a llama.cpp vocabulary (``llguidance.llamacpp``), and computes
each step's token mask lazily, so large bounds (``maxLength: 10**9``, ``a{0,10**8}``) cost
nothing up front (measured: every case of issue 11 compiles in < 1 ms and masks in < 1 ms).

A request's schema is first vetted (:func:`app.providers.schema_vet.vet_schema`).  What
llguidance cannot enforce is left out of the grammar (``lenient`` mode for keywords such as
``uniqueItems`` or ``not``; a ``pattern`` its regex engine refuses, e.g. look-ahead, is
stripped) and the output is checked against the whole schema afterwards
(:class:`OutputCheck`).  Every matcher runs under
:func:`app.providers.schema_limits.parser_limits`, so neither compiling a grammar nor one
token's mask can pin the model thread.
"""

from __future__ import annotations

import copy
import functools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from app.providers import schema_limits as limits
from app.providers.base import ProviderError, UnsupportedError
from app.providers.schema_vet import SchemaRejected, VettedSchema, subschemas

COMPACT = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}
"""JSON layout inside grammars: single spaces, no newlines (small models wander otherwise)."""

JSON_OPTIONS = {**COMPACT, "lenient": True, "coerce_one_of": True}
"""llguidance's JSON compiler options: leave out what it cannot enforce (we check it later)."""

INSTALL_HINT = "structured output on this runtime needs llguidance: pip install llguidance==1.9.1"

SAFE_INT = 2**53 - 1


def bounded_integers(node: Any) -> Any:
    """The schema with unbounded integers capped at +-(2**53 - 1).

    JSON clients lose precision past that anyway; without a bound a weak model can write
    digits until max_tokens."""
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


def _llguidance() -> Any:
    try:
        import llguidance
    except ImportError as exc:
        raise UnsupportedError(INSTALL_HINT) from exc
    return llguidance


@dataclass
class SchemaGrammar:
    """A vetted schema made ready for llguidance."""

    vetted: VettedSchema
    grammar: Any
    """The JSON schema handed to llguidance (``x-guidance`` options set)."""
    unenforced: list[str] = field(default_factory=list)
    """What the grammar leaves out; non-empty means the output is checked afterwards."""

    @property
    def checked(self) -> bool:
        return bool(self.unenforced)


def schema_grammar(vetted: VettedSchema, param: str) -> SchemaGrammar:
    """Strip patterns llguidance's regex engine refuses; note keywords it will not enforce."""
    llg = _llguidance()
    grammar = copy.deepcopy(vetted.grammar) if isinstance(vetted.grammar, dict) else vetted.grammar
    unenforced = list(vetted.relaxed)
    stack: list[tuple[str, Any]] = [("#", grammar)]
    while stack:
        where, node = stack.pop()
        if not isinstance(node, dict):
            continue
        pattern = node.get("pattern")
        if isinstance(pattern, str) and _regex_error(llg, pattern):
            del node["pattern"]
            unenforced.append(f"{where}/pattern")
        stack.extend(subschemas(node, where))
    if isinstance(grammar, bool):
        grammar = {} if grammar else {"not": {}}
    grammar = {**bounded_integers(grammar), "x-guidance": JSON_OPTIONS}
    source = llg.LLMatcher.grammar_from_json_schema(grammar)
    failed, messages = llg.LLMatcher.validate_grammar_with_warnings(
        source, None, limits=limits.parser_limits())
    if failed:
        raise SchemaRejected(f"{param} schema cannot be enforced: {messages[0]}", param=param)
    unenforced += [m for m in messages if "Unimplemented" in m or "unimplemented" in m]
    return SchemaGrammar(vetted, grammar, unenforced)


@functools.lru_cache(maxsize=1024)
def _regex_error(llg: Any, pattern: str) -> bool:
    """True when llguidance cannot compile ``pattern`` (look-around, back-references ...)."""
    source = llg.LLMatcher.grammar_from_json_schema({"type": "string", "pattern": pattern})
    return bool(llg.LLMatcher.validate_grammar(source, None, limits=limits.parser_limits()))


def json_source(grammar: SchemaGrammar) -> str:
    """The llguidance grammar (serialised) for JSON values of ``grammar``'s schema."""
    return str(_llguidance().LLMatcher.grammar_from_json_schema(grammar.grammar))


def lark_json(grammar: SchemaGrammar) -> str:
    """A ``%json`` Lark rule body for ``grammar``'s schema."""
    return f"%json {json.dumps(grammar.grammar)}"


class Matcher:
    """An llguidance matcher over one tokenizer: masks logits, follows sampled tokens."""

    def __init__(self, lltok: Any, source: str, param: str) -> None:
        llg = _llguidance()
        started = time.monotonic()
        self.matcher = llg.LLMatcher(lltok, source, limits=limits.parser_limits(), log_level=0)
        self.compile_s = time.monotonic() - started
        if self.matcher.is_error():
            raise SchemaRejected(f"{param} cannot be enforced on this model: "
                                 f"{self.matcher.get_error()}", param=param)
        self.vocab = int(lltok.vocab_size)
        import llguidance.numpy as lnp

        self._bitmask = lnp.allocate_token_bitmask(1, self.vocab)
        self.worst_mask_s = 0.0
        self.mask_s = 0.0  # total time in masks, and how many: for benchmarks and logs
        self.masks = 0
        try:
            self.allowed()
        except ProviderError as exc:  # nothing can be generated at all: the schema's fault
            raise SchemaRejected(f"{param} cannot be enforced: {exc.message}", param=param) from exc

    def allowed(self, favourite: int | None = None) -> Any:
        """A boolean numpy mask of the tokens allowed next (never empty: errors raise).

        Where the grammar forces text, llguidance allows only its canonical tokenization;
        ``favourite`` (the model's own top token) is allowed as well when its bytes fit the
        grammar, so a model that spells forced text its own way is not pushed off course."""
        import llguidance.numpy as lnp
        import numpy as np

        started = time.monotonic()
        lnp.fill_next_token_bitmask(self.matcher, self._bitmask, 0)
        spent = time.monotonic() - started
        self.worst_mask_s = max(self.worst_mask_s, spent)
        self.mask_s += spent
        self.masks += 1
        if self.matcher.is_error():
            raise ProviderError(f"the output grammar failed: {self.matcher.get_error()}",
                                code="grammar_error")
        if spent > limits.MASK_BUDGET_S:
            raise ProviderError(f"the output grammar took {spent:.1f} s for one token (limit "
                                f"MASK_BUDGET_S = {limits.MASK_BUDGET_S} s)", code="grammar_error")
        bits = np.unpackbits(self._bitmask[0].view(np.uint8), bitorder="little")[: self.vocab]
        if not bits.any():
            raise ProviderError("no value satisfies the schema from here (the grammar allows no "
                                "token)", code="grammar_error")
        mask = bits.astype(bool)
        if favourite is not None and 0 <= favourite < self.vocab and not mask[favourite]:
            mask[favourite] = self._fits(int(favourite))
        return mask

    def _fits(self, token: int) -> bool:
        """Whether the grammar accepts ``token`` next (tried, then rolled back)."""
        if self.matcher.try_consume_tokens([token]) != 1:
            return False
        self.matcher.rollback(1)
        return True

    def consume(self, token: int) -> None:
        if not self.matcher.consume_token(int(token)):
            raise ProviderError(f"grammar rejected token {token}: {self.matcher.get_error()}",
                                code="grammar_error")


class OutputCheck:
    """Checks a finished reply against the whole schema where the grammar enforced less."""

    def __init__(self, grammar: SchemaGrammar) -> None:
        self.grammar = grammar

    def problem(self, text: str) -> str | None:
        """None when ``text`` is JSON valid for the schema, else what is wrong and where."""
        if not self.grammar.checked:
            return None
        try:
            value = json.loads(text)
        except ValueError as exc:
            return f"the reply is not JSON ({exc})"
        return schema_problem(self.grammar.vetted.schema, value)


def schema_problem(schema: Any, value: Any) -> str | None:
    """The first reason ``value`` fails ``schema``, or None.

    ``format`` is an annotation here, as JSON Schema 2020-12 says: llguidance enforces the
    formats it knows with RFC regexes (Python's checkers are stricter, e.g. year 0000)."""
    import re

    import jsonschema
    from jsonschema.exceptions import best_match

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    validator = cls(schema)
    try:
        error = best_match(validator.iter_errors(value))
    except re.error:  # an ECMA-only pattern Python cannot run: that part stays unchecked
        return None
    if error is None:
        return None
    where = "#" + "".join(f"/{p}" for p in error.absolute_path)
    return f"{error.message} (at {where})"


def invalid_output(problem: str, unenforced: list[str]) -> ProviderError:
    """The error for a finished reply that breaks its schema (OpenAI's "model produced
    invalid content" 500, which its SDKs retry)."""
    return ProviderError(
        f"The model produced output that does not match the schema: {problem}. The grammar "
        f"could not enforce {', '.join(unenforced)}; retry, or drop those keywords.",
        status=500, code="invalid_model_output")
