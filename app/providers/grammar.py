"""JSON-schema constraints: what can be enforced, and llama.cpp grammars (GBNF) for it.

:func:`check_schema` walks a schema and raises :class:`UnsupportedError` (a 400 naming the
keyword and where it is) for anything the grammar would *not* enforce, so a request never
gets silently unconstrained output.  The supported subset is what llama.cpp's JSON-schema
converter turns into grammar rules: ``type`` (one or a list), ``properties`` / ``required``
/ ``additionalProperties``, ``items`` with ``minItems`` / ``maxItems``, ``prefixItems``,
``enum``, ``const``, ``anyOf``, local ``$ref`` into ``$defs`` / ``definitions``, strings with
``minLength`` / ``maxLength``, ``pattern`` or a ``format`` of date, time, date-time or uuid.

:func:`response_format_schema` turns OpenAI's ``response_format`` into a schema (or None for
plain text); :func:`gbnf_for_schema` and :func:`gbnf_for_tool_calls` build llama.cpp grammars.
"""

from __future__ import annotations

import json
from typing import Any

from app.providers.base import UnsupportedError

ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "$id",
                         "$comment", "deprecated", "readOnly", "writeOnly", "strict",
                         "$defs", "definitions", "nullable"})
"""Keywords that never constrain output (``$defs`` bodies are checked where referenced)."""

STRING_FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3",
                            "uuid4", "uuid5"})
PRIMITIVES = frozenset({"string", "number", "integer", "boolean", "null", "object", "array"})

ANY_OBJECT: dict[str, Any] = {"type": "object"}


def _unsupported(keyword: str, where: str, param: str, why: str = "") -> UnsupportedError:
    detail = f" ({why})" if why else ""
    return UnsupportedError(
        f"JSON schema keyword '{keyword}' at {where} is not supported for constrained "
        f"output{detail}; remove it or use a supported alternative", param=param)


def _branch_keywords(node: dict[str, Any], where: str, param: str) -> set[str]:
    """The keywords the grammar enforces for this node (mirrors llama.cpp's converter)."""
    kind = node.get("type")
    if "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise _unsupported("$ref", where, param, f"only local references like '#/$defs/X', "
                               f"not {ref!r}")
        return {"$ref"}
    if "oneOf" in node:
        raise _unsupported("oneOf", where, param, "exclusive unions cannot be enforced; "
                           "use anyOf")
    if "allOf" in node:
        raise _unsupported("allOf", where, param)
    if "anyOf" in node:
        return {"anyOf", "type"}
    if isinstance(kind, list):
        for t in kind:
            if t not in PRIMITIVES:
                raise _unsupported("type", where, param, f"unknown type {t!r}")
        return {"type"}
    if kind is not None and kind not in PRIMITIVES:
        raise _unsupported("type", where, param, f"unknown type {kind!r}")
    if "const" in node:
        return {"const", "type"}
    if "enum" in node:
        return {"enum", "type"}
    if kind in (None, "object") and ("properties" in node or node.get(
            "additionalProperties", True) is not True):
        return {"type", "properties", "required", "additionalProperties"}
    if kind in (None, "array") and ("items" in node or "prefixItems" in node):
        items = node.get("items") or node.get("prefixItems")
        if isinstance(items, list) or "prefixItems" in node:
            return {"type", "items", "prefixItems"}
        return {"type", "items", "minItems", "maxItems"}
    if kind in (None, "string") and "pattern" in node:
        return {"type", "pattern"}
    fmt = node.get("format")
    if kind in (None, "string") and fmt is not None:
        if fmt not in STRING_FORMATS:
            raise _unsupported("format", where, param, f"format {fmt!r}; supported: date, "
                               "time, date-time, uuid")
        return {"type", "format"}
    if kind == "string" and ("minLength" in node or "maxLength" in node):
        return {"type", "minLength", "maxLength"}
    if kind is None and ("minLength" in node or "maxLength" in node):
        raise _unsupported("minLength/maxLength", where, param, "add \"type\": \"string\"")
    return {"type"}


def check_schema(schema: Any, *, param: str = "response_format", where: str = "#") -> None:
    """Raise UnsupportedError (400) if any part of ``schema`` would not be enforced."""
    if schema is True or schema == {}:
        return
    if not isinstance(schema, dict):
        raise UnsupportedError(f"JSON schema at {where} must be an object, got {schema!r}",
                               param=param)
    enforced = _branch_keywords(schema, where, param)
    for key in schema:
        if key not in enforced and key not in ANNOTATIONS:
            raise _unsupported(key, where, param)
    for name, sub in (schema.get("properties") or {}).items():
        check_schema(sub, param=param, where=f"{where}/properties/{name}")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        check_schema(extra, param=param, where=f"{where}/additionalProperties")
    items = schema.get("items")
    if isinstance(items, dict):
        check_schema(items, param=param, where=f"{where}/items")
    for key in ("prefixItems", "anyOf"):
        seq = schema.get(key) if key in enforced else None
        for i, sub in enumerate(seq or (items if key == "prefixItems" and isinstance(items, list)
                                        else [])):
            check_schema(sub, param=param, where=f"{where}/{key}/{i}")
    for key in ("$defs", "definitions"):
        for name, sub in (schema.get(key) or {}).items():
            check_schema(sub, param=param, where=f"{where}/{key}/{name}")


def response_format_schema(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    """The schema a ``response_format`` asks for (checked), or None for free text.

    ``json_object`` means "any JSON object"; ``json_schema`` needs ``json_schema.schema``;
    llama-cpp-python's own ``{"type": "json_object", "schema": ...}`` is honoured too.
    """
    if not fmt:
        return None
    kind = fmt.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        schema = fmt.get("schema") or ANY_OBJECT
    elif kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema")
        if schema is None:
            raise UnsupportedError("response_format json_schema needs json_schema.schema",
                                   param="response_format")
    else:
        raise UnsupportedError(f"response_format type {kind!r} is not supported (use text, "
                               "json_object or json_schema)", param="response_format")
    check_schema(schema, param="response_format")
    return schema


def _converter() -> Any:
    from llama_cpp.llama_grammar import SchemaConverter

    return SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)


def _visit(converter: Any, schema: dict[str, Any], name: str, param: str) -> str:
    try:
        resolved = converter.resolve_refs(json.loads(json.dumps(schema)), name)
        return str(converter.visit(resolved, name))
    except (ValueError, AssertionError, KeyError) as exc:
        raise UnsupportedError(f"JSON schema cannot be turned into a grammar: {exc}",
                               param=param) from exc


def gbnf_for_schema(schema: dict[str, Any], *, param: str = "response_format") -> str:
    """A GBNF grammar whose root is exactly the JSON values valid for ``schema``."""
    check_schema(schema, param=param)
    conv = _converter()
    _visit(conv, schema, "", param)
    return str(conv.format_grammar())


TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"


def gbnf_for_tool_calls(tools: list[dict[str, Any]], *, multiple: bool,
                        allow_text: bool) -> str:
    """Hermes-style calls: ``<tool_call>\\n{"name": "N", "arguments": {...}}\\n</tool_call>``.

    Each call's arguments follow that tool's ``parameters`` schema.  ``multiple`` allows
    several calls in a row; ``allow_text`` lets the model answer in plain text instead (the
    text may not start with ``<``).
    """
    conv = _converter()
    alts = []
    for i, tool in enumerate(tools):
        fn = tool["function"]
        params = fn.get("parameters") or ANY_OBJECT
        check_schema(params, param="tools", where=f"tools[{i}].function.parameters")
        args_rule = _visit(conv, params, f"tool{i}-args", "tools")
        head = json.dumps(f'{TOOL_OPEN}\n{{"name": {json.dumps(fn["name"])}, "arguments": ')
        tail = json.dumps(f"}}\n{TOOL_CLOSE}")
        conv._add_rule(f"tool{i}-call", f"{head} {args_rule} {tail}")
        alts.append(f"tool{i}-call")
    conv._add_rule("call", " | ".join(alts))
    calls = 'call ("\\n" call)*' if multiple else "call"
    if allow_text:
        conv._add_rule("text", "([^<] [^\\x00]*)?")
        conv._add_rule("root", f"{calls} | text")
    else:
        conv._add_rule("root", calls)
    return str(conv.format_grammar())
