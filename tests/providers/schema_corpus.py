"""The schema corpus: JSON Schemas as pydantic v2, zod (through node) and MCP servers write
them, for the tests that every one is accepted and enforced on every local runtime."""

from __future__ import annotations

import copy
import enum
import json
import os
import subprocess
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, EmailStr, Field, HttpUrl

DATA = Path(__file__).resolve().parents[1] / "data" / "schemas"
ZOD = "zod-4.6.7"


class Color(enum.StrEnum):
    RED = "red"
    GREEN = "green"


class Address(BaseModel):
    street: str = Field(max_length=20)
    zip_code: Annotated[str, Field(pattern=r"\d{5}")]


class Person(BaseModel):
    name: str = Field(min_length=1, max_length=12)
    age: int = Field(ge=0, le=130)
    score: float = Field(gt=0, lt=1, multiple_of=0.25)
    email: EmailStr
    site: HttpUrl | None = None
    color: Color = Color.RED
    home: Address
    others: list[Address] = Field(default_factory=list, max_length=2)


class Circle(BaseModel):
    kind: Literal["circle"]
    radius: float = Field(gt=0)


class Square(BaseModel):
    kind: Literal["square"]
    side: int = Field(ge=1, le=10)


class Drawing(BaseModel):
    shape: Annotated[Circle | Square, Field(discriminator="kind")]
    tags: set[str] = Field(max_length=3)
    when: datetime
    day: date | None
    id: UUID


class Tree(BaseModel):
    label: str = Field(max_length=6)
    children: list[Tree] = Field(default_factory=list, max_length=2)


class Flags(BaseModel):
    mode: Literal["fast", "slow"] | int
    ratio: float | None = Field(default=None, ge=0, le=1)
    extra: dict[str, int] = Field(default_factory=dict, max_length=2)


def pydantic_schemas() -> dict[str, dict[str, Any]]:
    return {f"pydantic_{m.__name__.lower()}": m.model_json_schema()
            for m in (Person, Drawing, Tree, Flags)}


def zod_schemas() -> dict[str, dict[str, Any]]:
    """zod 4's ``z.toJSONSchema`` output, printed by node from the pinned package that
    ``./dev.sh setup`` installs into the cache (a missing install fails, never skips)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tater-desktop" / "npm"
    folder = cache / ZOD
    assert (folder / "node_modules" / "zod").is_dir(), (
        f"zod is not installed in {folder}: run ./dev.sh setup (npm install zod@4.6.7)")
    out = subprocess.run(["node", str(DATA / "zod_schemas.cjs"), str(folder)], check=True,
                         capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout)


def mcp_schemas() -> dict[str, dict[str, Any]]:
    servers = json.loads((DATA / "mcp_tools.json").read_text())
    return {f"mcp_{server}_{tool['name']}": tool["inputSchema"]
            for server, tools in servers.items() if not server.startswith("_") for tool in tools}


def corpus() -> dict[str, dict[str, Any]]:
    """Every schema of the corpus by name."""
    return {**pydantic_schemas(), **zod_schemas(), **mcp_schemas()}


def mcp_tool_lists() -> dict[str, list[dict[str, Any]]]:
    """Each MCP server's tools as OpenAI function tools."""
    servers = json.loads((DATA / "mcp_tools.json").read_text())
    return {server: [{"type": "function", "function": {
        "name": t["name"], "description": t["description"], "parameters": t["inputSchema"]}}
        for t in tools] for server, tools in servers.items() if not server.startswith("_")}


def tightened(schema: Any) -> Any:
    """``schema`` with short strings and lists and no extra properties: a subset of its
    values that a random-weight model finishes within a few hundred tokens.  Output valid
    for it is valid for the original schema."""
    out = copy.deepcopy(schema)
    stack = [out]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        kinds = node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]
        if "string" in kinds and not any(k in node for k in ("enum", "const", "maxLength")):
            node["maxLength"] = 40 if "format" in node or "pattern" in node else 6
        if "array" in kinds:
            node["maxItems"] = min(node.get("maxItems", 1), 1)
        if "object" in kinds and "additionalProperties" not in node:
            node["additionalProperties"] = False
        elif "object" in kinds and "properties" not in node:  # a map: free keys run long
            node["maxProperties"] = 0
        stack.extend(v for k, v in node.items() if k not in ("enum", "const", "default"))
    return out
