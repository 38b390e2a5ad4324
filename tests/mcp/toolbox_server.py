"""A real MCP server (the SDK's MCPServer, formerly FastMCP) for the suite, over stdio.

Run as ``python tests/mcp/toolbox_server.py``.  Besides well-behaved tools it has tools that
misbehave on purpose: one exits mid-call, one never answers, one writes invalid JSON to stdout.
"""

from __future__ import annotations

import os
import sys
import time

if os.environ.get("TOOLBOX_STARTS_FILE"):  # lets a test count (and find) the server's processes
    with open(os.environ["TOOLBOX_STARTS_FILE"], "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()}\n")
if os.environ.get("TOOLBOX_MUTE"):  # a server that never answers the handshake
    time.sleep(3600)

from mcp.server.mcpserver import MCPServer  # after the cheap checks above

server = MCPServer("toolbox", instructions="Test tools for Tater's suite.")
# The SDK diverts fd 1 to stderr while it serves; a copy made now still reaches the client.
WIRE = os.dup(1)


@server.tool(description="Add two whole numbers.")
def add(a: int, b: int) -> int:
    return a + b


@server.tool(description="Repeat a text in capitals, with the server's process id.")
def shout(text: str) -> str:
    return f"{text.upper()}! (pid {os.getpid()})"


@server.tool(description="Exits the server process in the middle of the call.")
def crash() -> str:
    print("toolbox: crashing on purpose", file=sys.stderr, flush=True)
    os._exit(3)


@server.tool(description="Never answers.")
def hang() -> str:
    time.sleep(3600)
    return "unreachable"


@server.tool(description="Writes a line that is not JSON to stdout, then never answers.")
def garbage() -> str:
    os.write(WIRE, b"{this is not json\n")
    time.sleep(3600)
    return "unreachable"


if __name__ == "__main__":
    server.run()
