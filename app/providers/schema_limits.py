"""Every bound on what a JSON Schema (tools, ``response_format``) may cost us, in one place.

A schema from a request is vetted (:mod:`app.providers.schema_vet`) before anything is
compiled; a schema past one of these limits is a 400 that names the limit.  The numbers
leave real clients far inside them: the largest tool lists seen (Claude Code's ~20 tools,
MCP servers with dozens) are a few thousand schema nodes; pydantic / zod enums of country
or time-zone names have a few hundred values; their patterns have bounds in the tens.

The grammar engine (llguidance) has its own budgets (:func:`parser_limits`), which bound
the work of compiling a grammar and of computing each token's mask, so no grammar can pin
the model thread whatever got past the checks above.  Measured on the tiny GGUF (2 shared
cores): issue 11's ``maxLength`` / ``maxItems`` of 10**9 compile in 2-50 ms and mask in
< 1 ms per token (llguidance is lazy, so no bound needs capping); at these limits a
4,096-value enum or 600 required properties compile in 0.1-0.4 s, a mask in < 15 ms.
"""

from __future__ import annotations

MAX_SCHEMA_NODES = 20_000
"""JSON values (objects, arrays, scalars) in one schema (one tool's parameters, or the
``response_format`` schema)."""

MAX_SCHEMA_DEPTH = 64
"""Nesting of JSON containers inside one schema."""

MAX_REFS = 1_000
"""``$ref`` keywords in one schema."""

MAX_ENUM_VALUES = 4_096
"""Values in one ``enum`` (a 50,000-value enum held a model for 20 s on the old path)."""

MAX_ENUM_BYTES = 256 * 1024
"""Bytes of JSON in one ``enum`` or ``const``."""

MAX_PATTERN_LENGTH = 2_000
"""Characters in one ``pattern`` (or ``patternProperties`` key)."""

MAX_PATTERN_REPEAT = 10_000
"""The largest bound of one regex quantifier ``{m,n}``."""

MAX_PATTERN_REPEAT_PRODUCT = 100_000
"""The product of the bounds of nested quantifiers (``((a{0,1000}){0,1000})`` is 10**6)."""

MAX_TOOLS = 512
"""Function tools in one request."""

MASK_BUDGET_S = 2.0
"""Wall time allowed for one token's mask; a slower step ends the generation with an error."""


def parser_limits() -> object:
    """llguidance's parser and lexer budgets (``LLParserLimits``) for every matcher we build.

    Defaults of llguidance 1.9, except the per-step lexer fuel and Earley items, lowered so
    a single mask costs at most a few milliseconds of CPU (fuel runs at ~14k/ms, items at
    ~20k/ms), and ``verbose_errors`` off, so an error names the problem without dumping the
    grammar into the reply.
    """
    import llguidance

    return llguidance.LLParserLimits(
        max_items_in_row=2_000,
        initial_lexer_fuel=1_000_000,
        step_lexer_fuel=100_000,
        step_max_items=50_000,
        max_lexer_states=250_000,
        max_grammar_size=500_000,
        verbose_errors=False,
    )
