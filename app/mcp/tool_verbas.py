"""An MCP server's tools as Verbas: the tool's JSON schema is the arguments schema.

Each tool becomes a Verba with the id ``mcp_<server>_<tool>`` (lower-case, ``_`` for anything
else, shortened with a hash when long), off until the user enables it, marked as acting on the
world (Tater cannot know what a foreign tool does).  Its handler hands the call to a caller
(:class:`app.mcp.clients.McpClients`) that turns the MCP result into a :class:`VerbaResult`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from app.verbas.base import RESERVED_ARGS, Verba, VerbaContext, VerbaResult

MCP_SOURCE_PREFIX = "MCP server "
SUMMARY_MAX_CHARS = 500
DESCRIPTION_MAX_CHARS = 600

ToolCaller = Callable[[str, str, dict[str, Any], float], Awaitable[VerbaResult]]


def verba_id(server: str, tool: str) -> str:
    """A valid, stable Verba id for ``tool`` of ``server``."""
    slug = re.sub(r"[^a-z0-9]+", "_", f"{server}_{tool}".lower()).strip("_")
    vid = f"mcp_{slug}"
    if len(vid) > 64:
        digest = hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()[:8]
        vid = f"{vid[:55]}_{digest}"
    return vid


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tool_verba(server: str, tool: dict[str, Any], call: ToolCaller) -> Verba:
    """The Verba for one tool listing entry (``name``, ``description``, ``inputSchema``...).

    Raises ValueError when the tool cannot be offered (bad schema, reserved argument names).
    """
    name = str(tool.get("name") or "")
    if not name:
        raise ValueError("a tool without a name")
    schema = tool.get("inputSchema") or {"type": "object", "properties": {}}
    if not isinstance(schema, dict):
        raise ValueError(f"tool {name!r}: the input schema is not an object")
    schema = json.loads(json.dumps(schema))  # a private copy
    schema.pop("$schema", None)  # drafts differ; Verbas are checked as 2020-12
    clash = RESERVED_ARGS & set(schema.get("properties") or {})
    if clash:
        raise ValueError(f"tool {name!r}: argument names {sorted(clash)} are reserved for the "
                         "trusted origin, so Hydra cannot call it")
    title = str(tool.get("title") or (tool.get("annotations") or {}).get("title") or name)
    description = _cut(str(tool.get("description") or f"The {name} tool of {server}."),
                       DESCRIPTION_MAX_CHARS)

    async def handler(ctx: VerbaContext, **arguments: Any) -> VerbaResult:
        return await call(server, name, arguments, ctx.timeout)

    return Verba(id=verba_id(server, name), name=f"{title} ({server})",
                 description=description, handler=handler, parameters=schema,
                 default_enabled=False, acts_on_world=True,
                 source=f"{MCP_SOURCE_PREFIX}{server}", wants_ctx=True)


def result_from_mcp(server: str, tool: str, result: Any) -> VerbaResult:
    """A ``CallToolResult`` as a VerbaResult: text for the summary, structured content as data."""
    texts: list[str] = []
    for block in getattr(result, "content", None) or []:
        kind = getattr(block, "type", "")
        if kind == "text":
            texts.append(str(getattr(block, "text", "")))
        elif kind in ("image", "audio"):
            texts.append(f"[{kind} {getattr(block, 'mime_type', '')}]")
        elif kind == "resource_link":
            texts.append(f"[resource {getattr(block, 'uri', '')}]")
        elif kind == "resource":
            res = getattr(block, "resource", None)
            texts.append(str(getattr(res, "text", None) or f"[resource {getattr(res, 'uri', '')}]"))
    text = "\n".join(t for t in texts if t).strip()
    structured = getattr(result, "structured_content", None)
    if getattr(result, "is_error", False):
        return VerbaResult.failure(f"{tool} on {server} reported an error: "
                                   f"{_cut(text or 'no details', SUMMARY_MAX_CHARS)}", structured)
    summary = _cut(text, SUMMARY_MAX_CHARS) if text else f"{tool} on {server} finished"
    data = structured if structured is not None else (text if len(text) > SUMMARY_MAX_CHARS else None)
    return VerbaResult.success(summary, data)
