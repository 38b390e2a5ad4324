"""Fuzzing the schema-to-constraints step (issue 11): random JSON Schemas up to a bounded
size, valid and not, always end in bounded constraints (a grammar whose masks are computed
in milliseconds and never empty) or a 400, each within a time limit.  A fixed budget
(``derandomize``, ``max_examples``) keeps it deterministic and well under a minute."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.providers.schema_vet import SchemaRejected
from tests.providers.schema_fixtures import compile_and_walk, gguf_lltokenizer

__all__ = ["gguf_lltokenizer"]

PER_SCHEMA_S = 2.0
"""Vetting, compiling and a 30-token walk of one schema (measured: milliseconds)."""

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                    st.floats(allow_nan=False, allow_infinity=False, width=32), st.text(max_size=6))
NUMBERS = st.one_of(st.integers(-3, 12), st.integers(0, 10**10), st.floats(-1e3, 1e3),
                    st.sampled_from(["x", None, True]))
TYPES = st.sampled_from(["string", "number", "integer", "boolean", "null", "object", "array",
                         "nonsense"])
PATTERNS = st.sampled_from([
    "^a{0,100000000}$", "^((a{0,1000}){0,1000}){0,1000}$", "((a{0,30}){0,30}){0,30}", "[a-z]+",
    "^(?=x).*$", "(", "\\d{2,4}", "^$", "a|b", "(a*)*b", "[^\"]{1,3}", "\\p{L}+", "^[A-Z]{2}$"])
FORMATS = st.sampled_from(["email", "uri", "date-time", "date", "uuid", "ipv4", "hostname", "bogus"])
REFS = st.sampled_from(["#", "#/$defs/a", "#/$defs/b", "#/$defs/nope", "https://example.com/s.json",
                        "#/properties/a"])
NAMES = st.sampled_from(["a", "b", "c"])


def _schema(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries({}, optional={
        "type": TYPES | st.lists(TYPES, max_size=3, unique=True),
        "enum": st.lists(SCALARS, max_size=4), "const": SCALARS,
        "minimum": NUMBERS, "maximum": NUMBERS, "exclusiveMinimum": NUMBERS,
        "exclusiveMaximum": NUMBERS, "multipleOf": st.sampled_from([0.5, 3, 7, 0, -1]),
        "minLength": NUMBERS, "maxLength": NUMBERS, "minItems": NUMBERS, "maxItems": NUMBERS,
        "minProperties": NUMBERS, "maxProperties": NUMBERS,
        "pattern": PATTERNS, "format": FORMATS, "uniqueItems": st.booleans(),
        "properties": st.dictionaries(NAMES, children, max_size=3),
        "required": st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=3),
        "additionalProperties": st.booleans() | children, "items": children,
        "prefixItems": st.lists(children, max_size=2), "anyOf": st.lists(children, max_size=3),
        "oneOf": st.lists(children, max_size=2), "allOf": st.lists(children, max_size=2),
        "not": children, "$ref": REFS,
    })


SCHEMAS = st.recursive(st.booleans() | _schema(st.just({})), _schema, max_leaves=10)
ROOTS = st.one_of(SCHEMAS, st.builds(lambda s, a, b: {**s, "$defs": {"a": a, "b": b}}
                                     if isinstance(s, dict) else s, SCHEMAS, SCHEMAS, SCHEMAS))


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(schema=ROOTS)
def test_any_schema_gives_bounded_constraints_or_a_400(schema: Any, gguf_lltokenizer: Any) -> None:
    started = time.monotonic()
    try:
        _, _, worst = compile_and_walk(schema, gguf_lltokenizer, steps=30)
    except SchemaRejected as exc:
        assert exc.status == 400 and exc.param == "response_format" and exc.message
    else:
        assert worst < 0.1, f"one mask took {worst:.3f} s"
    assert time.monotonic() - started < PER_SCHEMA_S
