"""Find OpenAI-compatible servers already running on this machine.

:func:`discover_servers` asks ``GET /v1/models`` on the usual ports (Ollama, LM Studio,
llama-server, Jan, vLLM) plus any the user names, all at once with a short timeout, and
returns each server that answered with its models as candidate remote rows.  A server that
wants an API key is still reported (``needs_api_key``), without models.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from app.providers.remote import RemoteProvider

if TYPE_CHECKING:
    from app.settings import ModelRow

KNOWN_SERVERS: dict[int, str] = {
    11434: "Ollama",
    1234: "LM Studio",
    8080: "llama-server",
    1337: "Jan",
    8000: "vLLM",
}
DEFAULT_PORTS: tuple[int, ...] = tuple(KNOWN_SERVERS)


@dataclass
class DiscoveredServer:
    """One server that answered on ``host:port``."""

    name: str
    host: str
    port: int
    base_url: str
    models: list[str] = field(default_factory=list)
    rows: list[ModelRow] = field(default_factory=list)
    needs_api_key: bool = False


async def discover_servers(ports: Iterable[int] = DEFAULT_PORTS, host: str = "127.0.0.1",
                           timeout: float = 0.5, extra_ports: Iterable[int] = ()
                           ) -> list[DiscoveredServer]:
    """Probe ``ports`` (+ ``extra_ports``) concurrently; servers that answered, by port order."""
    wanted = list(dict.fromkeys(int(p) for p in (*ports, *extra_ports)))
    bad = [p for p in wanted if not 0 < p < 65536]
    if bad:
        raise ValueError(f"not a TCP port: {bad[0]}")
    limits = httpx.Limits(max_connections=max(1, len(wanted)))
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), limits=limits,
                                 follow_redirects=False) as client:
        found = await asyncio.gather(*(_probe(client, host, p) for p in wanted))
    return [s for s in found if s is not None]


async def _probe(client: httpx.AsyncClient, host: str, port: int) -> DiscoveredServer | None:
    shown = f"[{host}]" if ":" in host else host
    base_url = f"http://{shown}:{port}/v1"
    try:
        resp = await client.get(f"{base_url}/models")
    except httpx.HTTPError:
        return None
    name = KNOWN_SERVERS.get(port, "OpenAI-compatible server")
    server = DiscoveredServer(name=name, host=host, port=port, base_url=base_url)
    if resp.status_code in (401, 403):
        server.needs_api_key = True
        return server
    if resp.status_code != 200:
        return None
    try:
        data = resp.json().get("data")
    except (ValueError, AttributeError):
        return None
    if not isinstance(data, list):
        return None
    for item in data:
        model = item.get("id") if isinstance(item, dict) else None
        if isinstance(model, str) and model:
            server.models.append(model)
            server.rows.append(RemoteProvider.row_for(model, base_url=base_url,
                                                      display_name=f"{model} ({name})"))
    return server
