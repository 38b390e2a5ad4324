"""MCP tools as Verbas: ids, schemas, refusals, and results in Hydra's shape (no server needed)."""

from __future__ import annotations

from typing import Any

import mcp_types as types
import pytest

from app.mcp.config import ImportProblem, parse_mcp_servers_json
from app.mcp.tool_verbas import result_from_mcp, tool_verba, verba_id
from app.verbas import VerbaResult


async def never(server: str, tool: str, args: dict[str, Any], timeout: float) -> VerbaResult:
    return VerbaResult.success(f"{server}/{tool} {args} {timeout}")


def test_ids_are_valid_and_stable() -> None:
    assert verba_id("everything", "get-sum") == "mcp_everything_get_sum"
    assert verba_id("My Server", "Do.Thing") == "mcp_my_server_do_thing"
    long = verba_id("s" * 40, "t" * 40)
    assert len(long) == 64 and long == verba_id("s" * 40, "t" * 40) != verba_id("s" * 40, "u" * 40)


async def test_schema_and_call() -> None:
    v = tool_verba("box", {"name": "add", "description": "Add.", "inputSchema": {
        "$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
        "properties": {"a": {"type": "integer"}}, "required": ["a"]}}, never)
    assert v.parameters == {"type": "object", "properties": {"a": {"type": "integer"}},
                            "required": ["a"]}
    assert not v.default_enabled and v.acts_on_world and v.wants_ctx
    with pytest.raises(ValueError, match="reserved"):
        tool_verba("box", {"name": "who", "inputSchema": {
            "type": "object", "properties": {"session_id": {"type": "string"}}}}, never)


def test_results() -> None:
    ok = result_from_mcp("box", "add", types.CallToolResult(
        content=[types.TextContent(text="5")], structured_content={"result": 5}))
    assert ok.ok and ok.summary == "5" and ok.data == {"result": 5}
    bad = result_from_mcp("box", "add", types.CallToolResult(
        content=[types.TextContent(text="a must be an integer")], is_error=True))
    assert not bad.ok and bad.summary == "add on box reported an error: a must be an integer"
    image = result_from_mcp("box", "pic", types.CallToolResult(
        content=[types.ImageContent(data="AAAA", mime_type="image/png")]))
    assert image.summary == "[image image/png]"


def test_claude_desktop_json() -> None:
    configs, secrets = parse_mcp_servers_json("""{"mcpServers": {
        "fs": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]},
        "gh": {"command": "gh-mcp", "env": {"GITHUB_TOKEN": "ghp_x", "LOG": "1"}},
        "web": {"url": "https://example.invalid/mcp", "headers": {"X-Api-Key": "k"}}}}""")
    fs, gh, web = configs
    assert (fs.transport, fs.command, fs.args[-1]) == ("stdio", "npx", "/tmp")
    assert gh.env == {"LOG": "1"} and gh.secret_names == ["GITHUB_TOKEN"]
    assert web.transport == "http" and web.headers == {} and web.secret_names == ["X-Api-Key"]
    assert secrets == {"mcp:gh:env:GITHUB_TOKEN": "ghp_x", "mcp:web:header:X-Api-Key": "k"}
    for text, said in (("[]", "JSON object"), ('{"mcpServers": {}}', 'no "mcpServers"'),
                       ('{"mcpServers": {"x": {"args": []}}}', "needs a command"),
                       ('{"mcpServers": {"bad name!": {"command": "x"}}}', "server name")):
        with pytest.raises(ImportProblem, match=said):
            parse_mcp_servers_json(text)
