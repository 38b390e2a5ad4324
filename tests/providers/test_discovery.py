# ruff: noqa: F811 - pytest fixtures are imported by name
"""Discovery of OpenAI-compatible servers on this machine, against a real llama_cpp.server."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from app.providers.base import ChatMessage, ChatRequest
from app.providers.discovery import DEFAULT_PORTS, KNOWN_SERVERS, discover_servers
from app.providers.remote import RemoteProvider
from tests.providers.peer_fixtures import (  # noqa: F401 - fixtures
    Peer,
    open_llama_peer,
    refusing_port,
    silent_port,
)


def test_default_ports_cover_the_usual_servers() -> None:
    assert set(DEFAULT_PORTS) == {11434, 1234, 8080, 1337, 8000}
    assert KNOWN_SERVERS[11434] == "Ollama" and KNOWN_SERVERS[1234] == "LM Studio"


async def test_finds_a_started_peer_with_its_models(open_llama_peer: Peer, refusing_port: int,
                                                    silent_port: int) -> None:
    second_silent = socket.socket()
    second_silent.bind(("127.0.0.1", 0))
    second_silent.listen(4)
    silent_2 = second_silent.getsockname()[1]
    t0 = time.monotonic()
    try:
        found = await discover_servers(
            extra_ports=[open_llama_peer.port, refusing_port, silent_port, silent_2], timeout=1.5)
    finally:
        second_silent.close()
    elapsed = time.monotonic() - t0
    assert 1.5 <= elapsed < 3.0  # two silent ports, probed at once: one timeout, not two
    by_port = {s.port: s for s in found}
    assert not {refusing_port, silent_port, silent_2} & set(by_port)
    server = by_port[open_llama_peer.port]
    assert server.base_url == open_llama_peer.base_url and server.models == ["tiny"]
    assert not server.needs_api_key
    (row,) = server.rows
    assert row.id == f"remote::127.0.0.1:{open_llama_peer.port}::tiny"
    assert row.provider == "remote" and row.options["base_url"] == open_llama_peer.base_url
    model = RemoteProvider().load(row)  # the candidate row works as it is
    result = await model.complete(ChatRequest([ChatMessage("user", "hi")], max_tokens=4))
    await model.aclose()
    assert result.finish_reason == "length" and result.text


async def test_a_server_that_wants_a_key_is_reported() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b'{"error": {"message": "Invalid API key"}}'
        writer.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        found = await discover_servers(ports=[], extra_ports=[port], timeout=0.5)
    finally:
        server.close()
    assert [(s.port, s.needs_api_key, s.models) for s in found] == [(port, True, [])]


async def test_bad_port_is_rejected() -> None:
    with pytest.raises(ValueError, match="port"):
        await discover_servers(ports=[70000])
