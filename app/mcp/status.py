"""What the MCP client reports (kept free of the SDK, so settings and the UI import it cheaply)."""

from __future__ import annotations

from dataclasses import dataclass, field


class McpCallFailed(Exception):
    """A call could not be made or did not produce a result (message fit for the user)."""


@dataclass
class ServerState:
    """What the UI shows for a server."""

    name: str
    state: str  # "stopped" | "starting" | "running" | "failed" | "off"
    error: str | None = None
    tools: list[str] = field(default_factory=list)
