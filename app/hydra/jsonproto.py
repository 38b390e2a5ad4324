"""Reading JSON out of model text, whether or not decoding was grammar-constrained."""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


class NotJson(ValueError):
    """No JSON object could be read from the text."""


def parse_object(text: str) -> dict[str, Any]:
    """The first JSON object in ``text`` (code fences and chatter around it tolerated)."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for cand in candidates:
        cand = cand.strip()
        try:
            value = json.loads(cand)
        except ValueError:
            value = _first_object(cand)
        if isinstance(value, dict):
            return value
    raise NotJson("the reply is not a JSON object" if text.strip() else "the reply is empty")


def _first_object(text: str) -> Any:
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, m.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def strict_ok(schema: Any) -> bool:
    """True when a schema meets OpenAI's strict rules (every object closed, all required)."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" or "properties" in schema:
            props = schema.get("properties", {})
            if schema.get("additionalProperties") is not False:
                return False
            if set(props) != set(schema.get("required", [])):
                return False
        return all(strict_ok(v) for v in schema.values())
    if isinstance(schema, list):
        return all(strict_ok(v) for v in schema)
    return True


def json_schema_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI ``response_format`` asking for ``schema`` (strict when the schema allows)."""
    return {"type": "json_schema",
            "json_schema": {"name": name, "schema": schema, "strict": strict_ok(schema)}}
