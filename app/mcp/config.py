"""MCP settings: whether Tater serves ``/mcp``, and the MCP servers Hydra may use.

A server is either a local program spoken to over stdio (command, args, env) or a Streamable
HTTP endpoint (url, headers).  Secret values (an ``Authorization`` header, an ``API_KEY``
variable) are never kept here: only their names are, and the values live in the keyring under
:func:`secret_entry`.  :func:`parse_mcp_servers_json` reads the ``mcpServers`` file that Claude
Desktop (and Claude Code, LM Studio, Jan...) write.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")
_SECRET_NAME = re.compile(r"auth|token|secret|key|password|passwd|credential|cookie", re.I)


def secret_entry(server: str, kind: Literal["header", "env"], name: str) -> str:
    """The keyring entry of one secret header or environment value of an MCP server."""
    return f"mcp:{server}:{kind}:{name}"


def looks_secret(name: str) -> bool:
    """Whether a header or variable name suggests a credential (kept in the keyring)."""
    return bool(_SECRET_NAME.search(name))


class McpServerConfig(BaseModel):
    """One MCP server Hydra can use."""

    model_config = ConfigDict(extra="allow")  # keys a newer Tater wrote are kept

    name: str = Field(description="Unique name; tool ids are built from it.")
    transport: Literal["stdio", "http"] = "stdio"
    command: str = ""
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    secret_names: list[str] = Field(
        default_factory=list, description="Header (http) or variable (stdio) names whose values "
                                          "are in the keyring.")
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("an MCP server name is 1-48 letters, digits, '_', '-' or '.', "
                             "starting with a letter or digit")
        return v

    @model_validator(mode="after")
    def _transport_fields(self) -> McpServerConfig:
        if self.transport == "stdio" and not self.command.strip():
            raise ValueError(f"MCP server {self.name!r}: a stdio server needs a command")
        if self.transport == "http" and not re.match(r"^https?://", self.url):
            raise ValueError(f"MCP server {self.name!r}: a Streamable HTTP server needs an "
                             "http:// or https:// URL")
        return self

    def describe(self) -> str:
        """One line for the UI: the command line or the URL."""
        if self.transport == "http":
            return self.url
        return " ".join([self.command, *self.args])


class McpSettings(BaseModel):
    """The ``mcp`` settings section."""

    model_config = ConfigDict(extra="allow")

    server_enabled: bool = Field(default=True, description="Serve the enabled Verbas at /mcp.")
    idle_stop_seconds: float = Field(default=300.0, gt=0, le=86_400,
                                     description="Stop a stdio MCP server unused for this long.")
    servers: list[McpServerConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> McpSettings:
        seen: set[str] = set()
        for s in self.servers:
            if s.name.lower() in seen:
                raise ValueError(f"duplicate MCP server name {s.name!r}")
            seen.add(s.name.lower())
        return self

    def server(self, name: str) -> McpServerConfig | None:
        return next((s for s in self.servers if s.name == name), None)


class ImportProblem(ValueError):
    """The ``mcpServers`` JSON cannot be used (message says why)."""


def parse_mcp_servers_json(text: str) -> tuple[list[McpServerConfig], dict[str, str]]:
    """Servers from a Claude Desktop style ``{"mcpServers": {...}}`` file.

    Returns the configs (secret values removed) and the secrets to store, keyed by their
    keyring entry.  Raises :class:`ImportProblem` with a readable reason.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ImportProblem(f"the file is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ImportProblem('the file must hold a JSON object with "mcpServers"')
    servers = data.get("mcpServers", data.get("servers"))
    if not isinstance(servers, dict) or not servers:
        raise ImportProblem('no "mcpServers" object was found in the file')
    configs: list[McpServerConfig] = []
    secrets: dict[str, str] = {}
    for name, entry in servers.items():
        if not isinstance(entry, dict):
            raise ImportProblem(f"the entry {name!r} is not an object")
        try:
            config, found = _one_server(str(name), entry)
        except ValidationError as exc:
            reasons = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            raise ImportProblem(f"{name}: {reasons}") from None
        configs.append(config)
        secrets.update(found)
    return configs, secrets


def _one_server(name: str, entry: dict[str, Any]) -> tuple[McpServerConfig, dict[str, str]]:
    kind = str(entry.get("type") or entry.get("transport") or "").lower()
    if kind == "sse":
        raise ImportProblem(f"{name}: the old SSE transport is not supported; use the server's "
                            "Streamable HTTP URL")
    is_http = kind in ("http", "streamable-http", "streamable_http", "streamablehttp") or (
        not kind and "url" in entry and "command" not in entry)
    secrets: dict[str, str] = {}
    if is_http:
        headers, secret_names = _split(name, "header", _str_map(name, entry.get("headers")), secrets)
        return McpServerConfig(name=name, transport="http", url=str(entry.get("url") or ""),
                               headers=headers, secret_names=secret_names,
                               enabled=not entry.get("disabled", False)), secrets
    args = entry.get("args") or []
    if not isinstance(args, list):
        raise ImportProblem(f"{name}: \"args\" must be a list")
    env, secret_names = _split(name, "env", _str_map(name, entry.get("env")), secrets)
    return McpServerConfig(name=name, transport="stdio", command=str(entry.get("command") or ""),
                           args=[str(a) for a in args], env=env, secret_names=secret_names,
                           cwd=entry.get("cwd"), enabled=not entry.get("disabled", False)), secrets


def _str_map(name: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ImportProblem(f"{name}: headers and env must be objects of strings")
    return {str(k): str(v) for k, v in value.items()}


def _split(server: str, kind: Literal["header", "env"], values: dict[str, str],
           secrets: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    plain, names = {}, []
    for key, value in values.items():
        if looks_secret(key):
            names.append(key)
            secrets[secret_entry(server, kind, key)] = value
        else:
            plain[key] = value
    return plain, names
