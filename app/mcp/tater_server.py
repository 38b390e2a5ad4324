"""Tater's Verbas as an MCP server (the SDK's low-level ``Server``).

The tools are the Verbas Hydra may offer right now: enabled, configured, and not themselves
borrowed from another MCP server (that would let two Taters call each other in a loop).  A
Verba's definition is the one the registry knows: its id, its description and the JSON schema
derived from its typed signature.  A call runs through :meth:`VerbaRegistry.invoke`, exactly
as Hydra's calls do, with the same time limit and a trusted origin built from the request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from app import __version__
from app.mcp.tool_verbas import MCP_SOURCE_PREFIX
from app.verbas.base import RESERVED_ARGS, ArgumentsInvalid, Origin, Verba, VerbaResult

if TYPE_CHECKING:
    from app.keystore import SecretStore
    from app.settings import SettingsStore
    from app.verbas.registry import VerbaRegistry

SERVER_NAME = "tater"
ORIGIN_SCOPE_KEY = "tater.origin"
INSTRUCTIONS = ("Tools from Tater Desktop (its Verbas). Tools that act on the world (lights, "
                "devices) really do so.")


@dataclass
class VerbaSource:
    """Where the server finds the Verbas and their settings (read on every request)."""

    settings: SettingsStore
    registry: Callable[[], VerbaRegistry | None]
    secrets: Callable[[], SecretStore | None]

    def offered(self) -> list[Verba]:
        """The Verbas served right now, in registry order."""
        registry = self.registry()
        if registry is None:
            return []
        return [v for v in registry.enabled(self.settings.current, self.secrets())
                if not v.source.startswith(MCP_SOURCE_PREFIX)]


def verba_tool(v: Verba) -> types.Tool:
    """The MCP tool a Verba is: its id, its name, its contract and its arguments schema."""
    return types.Tool(
        name=v.id, title=v.name, description=v.contract(), input_schema=v.parameters,
        annotations=types.ToolAnnotations(title=v.name, read_only_hint=not v.acts_on_world,
                                          open_world_hint=v.acts_on_world))


def tool_result(result: VerbaResult) -> types.CallToolResult:
    """A Verba's result in MCP's shape: the summary as text, the data as structured content."""
    content: list[Any] = [types.TextContent(text=result.summary)]
    structured: dict[str, Any] = {"ok": result.ok, "summary": result.summary}
    if result.data is not None:
        try:
            structured["data"] = json.loads(json.dumps(result.data, default=str))
        except (TypeError, ValueError):
            structured["data"] = repr(result.data)
        content.append(types.TextContent(text=json.dumps(structured["data"], ensure_ascii=False)))
    return types.CallToolResult(content=content, structured_content=structured,
                                is_error=not result.ok)


def request_origin(request: Any) -> Origin:
    """The trusted origin the HTTP endpoint put in the request scope (never from the message)."""
    scope = getattr(request, "scope", None) or {}
    origin = scope.get(ORIGIN_SCOPE_KEY)
    return origin if isinstance(origin, Origin) else Origin(session_id="mcp:anonymous",
                                                            platform="mcp")


def build_server(source: VerbaSource) -> Server[Any]:
    """A low-level MCP server listing and calling the offered Verbas."""

    def find(name: str) -> Verba:
        v = next((v for v in source.offered() if v.id == name), None)
        if v is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool {name!r}: it is not an enabled, "
                           "configured Verba of this Tater (see Settings ▸ Hydra).")
        return v

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None
                         ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[verba_tool(v) for v in source.offered()])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        v = find(params.name)
        args = dict(params.arguments or {})
        reserved = sorted(k for k in args if k in RESERVED_ARGS)
        if reserved:
            return tool_result(VerbaResult.failure(
                f"{', '.join(reserved)} cannot be passed as arguments: who is asking comes from "
                "the request"))
        try:
            checked = v.validate(args)
        except ArgumentsInvalid as exc:
            return tool_result(VerbaResult.failure(f"invalid arguments for {v.id}: {exc}"))
        registry = source.registry()
        assert registry is not None  # find() succeeded
        settings = source.settings.current
        timeout = settings.hydra.tool_timeout_seconds
        call_ctx = registry.context(v, request_origin(ctx.request), settings, source.secrets(),
                                    timeout)
        return tool_result(await registry.invoke(v, checked, call_ctx, timeout))

    def input_schema(name: str) -> dict[str, Any] | None:
        v = next((v for v in source.offered() if v.id == name), None)
        return None if v is None else v.parameters

    return Server(SERVER_NAME, version=__version__, title="Tater Desktop",
                  instructions=INSTRUCTIONS, get_tool_input_schema=input_schema,
                  on_list_tools=list_tools, on_call_tool=call_tool)
