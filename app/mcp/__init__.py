"""MCP both ways: Tater serves its Verbas at ``/mcp``, and Hydra uses tools of MCP servers.

- :mod:`app.mcp.config`: the ``mcp`` settings section and the ``mcpServers`` JSON import.
- :mod:`app.mcp.tater_server`: the Verbas as an MCP server (the SDK's low-level ``Server``).
- :mod:`app.mcp.endpoint`: ``/mcp`` on the Quart app (the SDK's Streamable HTTP transport).
- :mod:`app.mcp.connection`, :mod:`app.mcp.clients`, :mod:`app.mcp.tool_verbas`: MCP servers
  as Verba sources for Hydra.

This package's ``__init__`` imports nothing, so settings can use the config models cheaply.
"""
