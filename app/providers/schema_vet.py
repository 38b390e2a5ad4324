"""The bounded check every JSON Schema from a request passes before it reaches a runtime.

:func:`vet_schema` refuses, with a 400 that names the problem, a schema that

- is not a JSON Schema (``jsonschema``'s metaschema check: ``{"maxLength": "x"}``,
  ``{"anyOf": []}``), or has a local ``$ref`` that points nowhere;
- is past a limit of :mod:`app.providers.schema_limits` (nodes, depth, ``$ref`` count,
  ``enum`` size, ``pattern`` length and quantifier bounds);
- no JSON value satisfies: an empty ``enum``, a lower bound above its upper bound
  (``minLength`` > ``maxLength``, ``minimum`` > ``maximum`` ...), or recursion through
  ``$ref`` with no way out (``{"$ref": "#/$defs/a"}`` where ``a`` is itself).

Everything else is accepted.  The result keeps the schema for checking the output
(references outside the document, which cannot be fetched, become ``true``) and a copy for
the grammar.  Large bounds (``maxLength: 10**9``) are fine: llguidance builds masks lazily.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from app.providers import schema_limits as limits
from app.providers.base import UnsupportedError


class SchemaRejected(UnsupportedError):
    """A schema we will not compile (400, ``invalid_schema``)."""

    code = "invalid_schema"


@dataclass
class VettedSchema:
    """A schema that passed :func:`vet_schema`."""

    schema: dict[str, Any] | bool
    """The schema to check output against (external references made ``true``)."""
    grammar: dict[str, Any] | bool
    """The schema to compile (the same today; the grammar step copies before changing it)."""
    relaxed: list[str] = field(default_factory=list)
    """Where the grammar enforces less than the schema asks (checked after generation)."""


SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
SCHEMA_ONE = ("additionalProperties", "additionalItems", "contains", "propertyNames", "not",
              "if", "then", "else", "unevaluatedItems", "unevaluatedProperties", "items")
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
BOUND_PAIRS = (("minLength", "maxLength"), ("minItems", "maxItems"),
               ("minProperties", "maxProperties"), ("minimum", "maximum"),
               ("minContains", "maxContains"))


def _reject(param: str, message: str) -> SchemaRejected:
    return SchemaRejected(message, param=param)


def subschemas(node: dict[str, Any], where: str) -> Iterator[tuple[str, Any]]:
    """(pointer, subschema) for each schema directly inside ``node``."""
    for key in SCHEMA_MAPS:
        value = node.get(key)
        if isinstance(value, dict):
            for name, sub in value.items():
                yield f"{where}/{key}/{_escape(name)}", sub
    for key in SCHEMA_ONE:
        value = node.get(key)
        if isinstance(value, dict | bool):
            yield f"{where}/{key}", value
    for key in SCHEMA_LISTS:
        value = node.get(key)
        if isinstance(value, list):
            for i, sub in enumerate(value):
                yield f"{where}/{key}/{i}", sub
    deps = node.get("dependencies")
    if isinstance(deps, dict):
        for name, sub in deps.items():
            if isinstance(sub, dict | bool):
                yield f"{where}/dependencies/{_escape(name)}", sub


def _escape(name: str) -> str:
    return str(name).replace("~", "~0").replace("/", "~1")


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


def _measure(schema: Any, param: str) -> None:
    """Count JSON values and depth without recursion (so a deep schema cannot overflow)."""
    nodes = 0
    stack: list[tuple[Any, int]] = [(schema, 1)]
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > limits.MAX_SCHEMA_NODES:
            raise _reject(param, f"{param} schemas are too large: more than "
                          f"{limits.MAX_SCHEMA_NODES} JSON values (limit MAX_SCHEMA_NODES)")
        if isinstance(value, dict | list):
            if depth > limits.MAX_SCHEMA_DEPTH:
                raise _reject(param, f"{param} schema nests deeper than "
                              f"{limits.MAX_SCHEMA_DEPTH} levels (limit MAX_SCHEMA_DEPTH)")
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)


KNOWN_DRAFTS = frozenset(
    f"{scheme}://json-schema.org/{path}{end}" for scheme in ("http", "https")
    for path in ("draft-04/schema", "draft-06/schema", "draft-07/schema",
                 "draft/2019-09/schema", "draft/2020-12/schema") for end in ("", "#"))
"""``$schema`` values checked against their own metaschema; any other is read as 2020-12
(never fetched: the validator would otherwise try to download an unknown one)."""


def _metaschema(schema: Any, param: str) -> None:
    """The check against the schema's own draft's metaschema (2020-12 when it names none).

    ``jsonschema-rs`` (Rust): ~0.03 ms for a typical tool schema, where Python ``jsonschema``
    takes ~50 ms on 2020-12's ``$dynamicRef`` metaschema.  Patterns are not compiled here:
    llguidance judges them (and one it cannot run is checked on the output instead)."""
    import jsonschema_rs

    if isinstance(schema, dict) and "$schema" in schema and schema["$schema"] not in KNOWN_DRAFTS:
        schema = {k: v for k, v in schema.items() if k != "$schema"}
    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as exc:
        where = "#" + "".join(f"/{_escape(str(p))}" for p in exc.instance_path)
        raise _reject(param, f"{param} is not a valid JSON Schema: {exc.message} (at {where})"
                      ) from None
    except jsonschema_rs.ReferencingError as exc:
        raise _reject(param, f"{param} is not a usable JSON Schema: {exc}") from None


def check_pattern(pattern: str, where: str, param: str) -> None:
    """Refuse a regex past the length or quantifier limits (the bounds multiply when nested)."""
    if len(pattern) > limits.MAX_PATTERN_LENGTH:
        raise _reject(param, f"pattern at {where} is {len(pattern)} characters long; the limit "
                      f"is {limits.MAX_PATTERN_LENGTH} (MAX_PATTERN_LENGTH)")
    inner: list[int] = [1]  # per open group: the largest repeat product inside it
    last = 1  # the repeat product of the atom just read (a group's inner product after ")")
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            last, i = 1, i + 2
            continue
        if ch == "[":
            i = _class_end(pattern, i)
            last = 1
            continue
        if ch == "(":
            inner.append(1)
            i += 1
            continue
        if ch == ")":
            last = inner.pop() if len(inner) > 1 else 1
            inner[-1] = max(inner[-1], last)
            i += 1
            continue
        if ch == "{":
            close = pattern.find("}", i)
            bounds = pattern[i + 1:close].split(",") if close > 0 else []
            if 1 <= len(bounds) <= 2 and all(b.strip().isdigit() or b == "" for b in bounds) \
                    and bounds[0].strip():
                top = max(int(b) for b in bounds if b.strip())
                if top > limits.MAX_PATTERN_REPEAT:
                    raise _reject(param, f"pattern at {where} repeats {top} times; the limit is "
                                  f"{limits.MAX_PATTERN_REPEAT} (MAX_PATTERN_REPEAT)")
                product = top * last
                if product > limits.MAX_PATTERN_REPEAT_PRODUCT:
                    raise _reject(param, f"pattern at {where} nests repeats to {product} "
                                  f"repetitions; the limit is {limits.MAX_PATTERN_REPEAT_PRODUCT}"
                                  " (MAX_PATTERN_REPEAT_PRODUCT)")
                inner[-1] = max(inner[-1], product)
                last = product
                i = close + 1
                continue
        last = 1
        i += 1


def _class_end(pattern: str, start: int) -> int:
    """The index after the character class opening at ``start``."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern[i] == "]":
            return i + 1
        i += 1
    return i


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_node(node: dict[str, Any], where: str, param: str) -> None:
    """Limits and contradictions local to one schema object."""
    for key in ("enum", "const"):
        if key not in node:
            continue
        if key == "enum" and len(node[key]) > limits.MAX_ENUM_VALUES:
            raise _reject(param, f"enum at {where} has {len(node[key])} values; the limit is "
                          f"{limits.MAX_ENUM_VALUES} (MAX_ENUM_VALUES)")
        size = len(json.dumps(node[key]))
        if size > limits.MAX_ENUM_BYTES:
            raise _reject(param, f"{key} at {where} is {size} bytes of JSON; the limit is "
                          f"{limits.MAX_ENUM_BYTES} (MAX_ENUM_BYTES)")
    if node.get("enum") == []:
        raise _reject(param, f"enum at {where} is empty, so no value satisfies the schema")
    for low, high in BOUND_PAIRS:
        lo, hi = node.get(low), node.get(high)
        if _number(lo) and _number(hi) and lo > hi:
            raise _reject(param, f"{low} ({lo}) is greater than {high} ({hi}) at {where}, so no "
                          "value satisfies the schema")
    lo, hi = node.get("exclusiveMinimum"), node.get("exclusiveMaximum")
    if _number(lo) and _number(hi) and lo >= hi:  # (draft 4's are booleans)
        raise _reject(param, f"exclusiveMinimum ({lo}) is not below exclusiveMaximum ({hi}) at "
                      f"{where}, so no value satisfies the schema")
    if isinstance(node.get("pattern"), str):
        check_pattern(node["pattern"], f"{where}/pattern", param)
    for key in node.get("patternProperties") or {}:
        check_pattern(key, f"{where}/patternProperties", param)


class _Refs:
    """Local ``$ref`` resolution by JSON pointer (``#``, ``#/$defs/x``)."""

    def __init__(self, root: Any, param: str) -> None:
        self.root = root
        self.param = param
        self.count = 0

    def local(self, ref: str) -> bool:
        return ref == "#" or ref.startswith("#/")

    def resolve(self, ref: str, where: str) -> Any:
        node = self.root
        for part in ref[2:].split("/") if ref != "#" else []:
            key = _unescape(part)
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise _reject(self.param, f"$ref {ref!r} at {where} points to nothing in the "
                              "schema")
        if not isinstance(node, dict | bool):
            raise _reject(self.param, f"$ref {ref!r} at {where} does not point to a schema")
        return node


def _walk(schema: Any, param: str) -> list[tuple[str, dict[str, Any]]]:
    """Every schema object with its pointer (iteratively), local checks applied."""
    out: list[tuple[str, dict[str, Any]]] = []
    stack: list[tuple[str, Any]] = [("#", schema)]
    while stack:
        where, node = stack.pop()
        if not isinstance(node, dict):
            continue
        _check_node(node, where, param)
        out.append((where, node))
        stack.extend(subschemas(node, where))
    return out


def _only(node: dict[str, Any], kind: str) -> bool:
    types = node.get("type")
    return types == kind or types == [kind]


def _productive(root: Any, nodes: list[tuple[str, dict[str, Any]]], refs: _Refs) -> bool:
    """Whether some finite JSON value satisfies ``root`` (a least fixpoint over ``$ref``).

    Conservative: only ``$ref``, ``allOf`` / ``anyOf`` / ``oneOf``, ``enum`` and the required
    properties / minimum items of schemas that can only be objects / arrays are followed, so
    a schema this calls empty has no finite instance.
    """
    known: dict[int, bool] = {}

    def deps(node: dict[str, Any]) -> list[tuple[str, list[Any]]]:
        """(all | any, schemas) conditions for ``node`` to be productive."""
        out: list[tuple[str, list[Any]]] = []
        ref = node.get("$ref")
        if isinstance(ref, str) and refs.local(ref):
            out.append(("all", [refs.resolve(ref, "")]))
        if isinstance(node.get("allOf"), list):
            out.append(("all", node["allOf"]))
        for key in ("anyOf", "oneOf"):
            if isinstance(node.get(key), list):
                out.append(("any", node[key]))
        props = node.get("properties") if isinstance(node.get("properties"), dict) else {}
        if _only(node, "object") and isinstance(node.get("required"), list):
            out.append(("all", [props[p] for p in node["required"] if p in props]))
        if _only(node, "array") and isinstance(node.get("minItems"), int) and node["minItems"] > 0:
            prefix = node.get("prefixItems") if isinstance(node.get("prefixItems"), list) else []
            items = node.get("items")
            need = list(prefix[: node["minItems"]])
            if len(need) < node["minItems"] and isinstance(items, dict | bool):
                need.append(items)
            out.append(("all", need))
        return out

    def value(schema: Any) -> bool:
        if isinstance(schema, bool):
            return schema
        return known.get(id(schema), False)

    conditions = {id(node): deps(node) for _, node in reversed(nodes)}  # leaves first
    for _, node in nodes:  # $ref targets and the like may not be walked as subschemas
        for _, group in conditions[id(node)]:
            for sub in group:
                if isinstance(sub, dict) and id(sub) not in conditions:
                    conditions[id(sub)] = deps(sub)
    by_id = {id(node): node for _, node in nodes}
    changed = True
    rounds = 0
    while changed and rounds <= len(conditions):
        changed, rounds = False, rounds + 1
        for key, conds in conditions.items():
            if known.get(key):
                continue
            node = by_id.get(key)
            if node is not None and node.get("enum") == []:
                continue
            ok = all((all if kind == "all" else any)(value(s) for s in group)
                     for kind, group in conds)
            if ok:
                known[key] = True
                changed = True
    return value(root)


def _external_refs(schema: Any, refs: _Refs, nodes: list[tuple[str, dict[str, Any]]],
                   relaxed: list[str]) -> Any:
    """A copy with references outside the document (which we never fetch) made ``true``."""
    if not any(isinstance(n.get("$ref"), str) and not refs.local(n["$ref"]) for _, n in nodes):
        return schema
    out = copy.deepcopy(schema)
    stack: list[tuple[str, Any]] = [("#", out)]
    while stack:
        where, node = stack.pop()
        if not isinstance(node, dict):
            continue
        ref = node.get("$ref")
        if isinstance(ref, str) and not refs.local(ref):
            del node["$ref"]
            relaxed.append(f"{where}/$ref ({ref} is not fetched)")
        stack.extend(subschemas(node, where))
    return out


def vet_schema(schema: Any, *, param: str) -> VettedSchema:
    """Check ``schema`` (see the module docstring); 400 :class:`SchemaRejected` if refused."""
    if not isinstance(schema, dict | bool):
        raise _reject(param, f"{param} schema must be a JSON object, got {type(schema).__name__}")
    _measure(schema, param)
    _metaschema(schema, param)
    nodes = _walk(schema, param)
    refs = _Refs(schema, param)
    for where, node in nodes:
        ref = node.get("$ref")
        if isinstance(ref, str):
            refs.count += 1
            if refs.count > limits.MAX_REFS:
                raise _reject(param, f"{param} schema has more than {limits.MAX_REFS} $ref "
                              "keywords (limit MAX_REFS)")
            if refs.local(ref):
                refs.resolve(ref, where)
    if not _productive(schema, nodes, refs):
        raise _reject(param, f"no JSON value satisfies the {param} schema: a $ref recursion "
                      "has no way out, or a required part is empty")
    relaxed: list[str] = []
    checked = _external_refs(schema, refs, nodes, relaxed)
    return VettedSchema(checked, checked, relaxed)
