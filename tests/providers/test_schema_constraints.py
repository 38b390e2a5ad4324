"""The schema-to-constraints step: what is refused (400, naming the limit), what is accepted
and enforced, and what is left out of the grammar and checked on the output instead."""

from __future__ import annotations

import json
import random
from typing import Any

import jsonschema
import pytest

from app.providers import schema_limits as limits
from app.providers.constraints import Matcher, OutputCheck, json_source, schema_grammar
from app.providers.schema_vet import SchemaRejected, check_pattern, vet_schema
from tests.providers.schema_fixtures import compile_and_walk, gguf_lltokenizer, random_walk

__all__ = ["gguf_lltokenizer"]

REFUSED = [
    ({"enum": []}, "enum at # is empty"),
    ({"anyOf": []}, "[] has less than 1 item (at #/anyOf)"),
    ({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}}, "has no way out"),
    ({"type": "object", "properties": {"x": {"$ref": "#"}}, "required": ["x"]}, "has no way out"),
    ({"$ref": "#/$defs/missing"}, "points to nothing"),
    ({"type": "string", "maxLength": "x"}, "\"x\" is not of type \"integer\" (at #/maxLength)"),
    ({"type": "string", "minLength": 5, "maxLength": 3}, "minLength (5) is greater than maxLength (3)"),
    ({"type": "integer", "minimum": 9, "maximum": 1}, "minimum (9) is greater than maximum (1)"),
    ({"type": "array", "minItems": 4, "maxItems": 2}, "minItems (4) is greater than maxItems (2)"),
    ({"type": "string", "pattern": "^a{0,100000000}$"}, "(MAX_PATTERN_REPEAT)"),
    ({"type": "string", "pattern": "^((a{0,1000}){0,1000}){0,1000}$"}, "(MAX_PATTERN_REPEAT_PRODUCT)"),
    ({"type": "string", "pattern": "a" * (limits.MAX_PATTERN_LENGTH + 1)}, "(MAX_PATTERN_LENGTH)"),
    ({"enum": list(range(limits.MAX_ENUM_VALUES + 1))}, "(MAX_ENUM_VALUES)"),
    ({"const": "x" * limits.MAX_ENUM_BYTES}, "(MAX_ENUM_BYTES)"),
    ({"enum": list(range(50_000))}, "(limit MAX_SCHEMA_NODES)"),
    (json.loads('{"items": ' * 70 + "{}" + "}" * 70), "(limit MAX_SCHEMA_DEPTH)"),
    ({"$defs": {f"d{i}": {"$ref": "#/$defs/d0"} for i in range(limits.MAX_REFS + 1)}}, "(limit MAX_REFS)"),
    ("string", "must be a JSON object"),
]


@pytest.mark.parametrize(("schema", "words"), REFUSED)
def test_refused_schemas_are_400s_naming_the_problem(schema: Any, words: str) -> None:
    with pytest.raises(SchemaRejected) as info:
        vet_schema(schema, param="response_format")
    assert info.value.status == 400 and info.value.param == "response_format"
    assert words in info.value.message


ACCEPTED = {
    "bounds": {"type": "object", "properties": {
        "n": {"type": "integer", "minimum": 1, "maximum": 7},
        "x": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "m": {"type": "integer", "multipleOf": 5, "minimum": 0, "maximum": 100}},
        "required": ["n", "x", "m"], "additionalProperties": False},
    "formats": {"type": "object", "properties": {f: {"type": "string", "format": f} for f in (
        "uri", "email", "date-time", "date", "time", "uuid", "ipv4", "ipv6", "hostname")},
        "required": ["uri", "email", "uuid", "ipv4"]},
    "unions": {"oneOf": [{"type": "string", "maxLength": 4}, {"type": "integer"}]},
    "allOf": {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}},
                         "required": ["a"]}, {"properties": {"b": {"type": "boolean"}}}]},
    "unique": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9},
               "uniqueItems": True, "maxItems": 4},
    "unanchored": {"type": "string", "pattern": "[a-z]+@x"},
    "lookahead": {"type": "string", "pattern": "^(?=.*[A-Z])[A-Za-z]{3,8}$"},
    "not": {"type": "object", "properties": {"v": {"not": {"type": "null"}}}, "required": ["v"]},
    "const": {"type": "object", "properties": {"kind": {"const": "circle"}}, "required": ["kind"]},
    "refs": {"$defs": {"Node": {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 5},
        "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}, "maxItems": 2}},
        "required": ["name"]}}, "$ref": "#/$defs/Node"},
    "nullable": {"type": ["string", "null"], "maxLength": 3},
    "draft7": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
               "definitions": {"A": {"type": "integer"}}, "properties": {"a": {"$ref": "#/definitions/A"}}},
    "external-ref": {"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}},
    "huge-bounds": {"type": "object", "properties": {
        "s": {"type": "string", "maxLength": 1_000_000_000},
        "l": {"type": "array", "items": {"type": "integer"}, "maxItems": 1_000_000_000}}},
    "true": True,
}


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_valid_schemas_compile_and_every_finished_walk_validates(name: str, gguf_lltokenizer: Any) -> None:
    schema = ACCEPTED[name]
    vetted = vet_schema(schema, param="response_format")
    finished = 0
    for seed in range(8):
        text, done, worst = compile_and_walk(schema, gguf_lltokenizer, seed=seed, steps=80)
        assert worst < 0.05, f"one mask took {worst:.3f} s"
        if done:
            finished += 1
            value = json.loads(text)
            grammar = schema_grammar(vetted, "response_format")
            problem = OutputCheck(grammar).problem(text)
            if not grammar.checked:  # fully enforced: the whole schema holds
                jsonschema.validate(value, vetted.schema)
            assert problem is None or grammar.checked
    # Free text inside these rarely ends by chance; the corpus test runs them end to end.
    assert finished or name in ("unanchored", "lookahead", "formats"), "no walk reached the end"


def test_keywords_left_out_of_the_grammar_are_named_and_checked(gguf_lltokenizer: Any) -> None:
    """uniqueItems cannot be enforced: an item list with one possible value repeats it."""
    schema = {"type": "array", "items": {"const": 1}, "minItems": 2, "maxItems": 2,
              "uniqueItems": True}
    grammar = schema_grammar(vet_schema(schema, param="response_format"), "response_format")
    assert grammar.checked and any("uniqueItems" in u for u in grammar.unenforced)
    matcher = Matcher(gguf_lltokenizer, json_source(grammar), "response_format")
    text, done = random_walk(matcher, gguf_lltokenizer, random.Random(0), 20)
    assert done and json.loads(text) == [1, 1]
    assert "has non-unique elements" in str(OutputCheck(grammar).problem(text))


def test_a_pattern_llguidance_cannot_run_is_stripped_and_checked(gguf_lltokenizer: Any) -> None:
    grammar = schema_grammar(vet_schema(ACCEPTED["lookahead"], param="x"), "x")
    assert grammar.unenforced == ["#/pattern"]
    assert OutputCheck(grammar).problem('"abc"') is not None
    assert OutputCheck(grammar).problem('"aBc"') is None


@pytest.mark.parametrize(("pattern", "ok"), [
    ("^[a-z]{2,3}$", True), (r"\{100000000\}", True), ("[{]{9,999}", True), ("[{]{9,99999}", False),
    ("(ab{100}){100}", True), ("(ab{100}){1001}", False), ("((a{10}){10}){10}(b{5})", True),
    ("x{0,10001}", False), ("x{3,}", True), ("x{,5}", True),
])
def test_pattern_quantifier_bounds(pattern: str, ok: bool) -> None:
    if ok:
        check_pattern(pattern, "#/pattern", "tools")
    else:
        with pytest.raises(SchemaRejected):
            check_pattern(pattern, "#/pattern", "tools")
