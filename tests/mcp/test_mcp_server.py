"""Tater as an MCP server: the official ``mcp`` SDK client against ``/mcp`` on the real server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from app.keystore import SecretStore
from app.verbas import secret_entry
from tests.conftest import LiveServer, start_live_server
from tests.hydra.support import HA_TOKEN, FakeHomeAssistant, http_server


@pytest.fixture
def live(clean_env: Path) -> Iterator[LiveServer]:
    server = start_live_server(clean_env, [], None)
    yield server
    server.services.shutdown()  # type: ignore[attr-defined]


def mcp_url(live: LiveServer) -> str:
    return live.root + "/mcp"


def connect(live: LiveServer, key: str | None = None, **kw: Any) -> Client:
    """The SDK's Client over the SDK's Streamable HTTP transport, with a bearer key ("": none)."""
    key = live.key if key is None else key
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    http = httpx2.AsyncClient(headers=headers, timeout=30)
    return Client(streamable_http_client(mcp_url(live), http_client=http), **kw)


async def test_lists_and_calls_calculator_and_clock(live: LiveServer) -> None:
    async with connect(live) as client:
        assert client.server_info is not None and client.server_info.name == "tater"
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {"clock", "calculator"}  # the enabled, configured Verbas
        calc = tools["calculator"]
        assert calc.input_schema["properties"]["expression"]["type"] == "string"
        assert calc.input_schema["required"] == ["expression"]
        assert calc.annotations is not None and calc.annotations.read_only_hint is True

        result = await client.call_tool("calculator", {"expression": "6 * 7"})
        assert not result.is_error
        assert result.content[0].text == "6 * 7 = 42"
        assert result.structured_content["data"]["value"] == 42

        now = await client.call_tool("clock", {"timezone": "UTC"})
        assert not now.is_error and "(UTC, UTC+0000)" in now.content[0].text
        assert now.structured_content["data"]["zone"] == "UTC"

        bad = await client.call_tool("calculator", {"expression": "1/0"})
        assert bad.is_error and bad.content[0].text == "division by zero"
        wrong = await client.call_tool("calculator", {"expr": "1"})
        assert wrong.is_error and "invalid arguments for calculator" in wrong.content[0].text
        spoof = await client.call_tool("calculator", {"expression": "1", "origin": "admin"})
        assert spoof.is_error and "origin cannot be passed" in spoof.content[0].text
        with pytest.raises(MCPError, match="Unknown tool 'shell'"):
            await client.call_tool("shell", {"cmd": "ls"})
    records = [r for r in live.services.request_log.records()  # type: ignore[attr-defined]
               if r.path == "/mcp"]
    assert len(records) >= 8 and all(r.mode == "mcp" for r in records)  # every call is logged
    assert records[-1].status == 400  # the unknown tool: a JSON-RPC error, sent as HTTP 400


async def test_home_assistant_over_mcp(live: LiveServer) -> None:
    ha = FakeHomeAssistant()
    SecretStore().set(secret_entry("home_assistant", "token"), HA_TOKEN)
    with http_server(ha) as (url, _seen):
        async with connect(live) as client:
            assert "home_assistant" not in {t.name for t in (await client.list_tools()).tools}
            live.settings.update(verbas={"home_assistant": {"enabled": True, "url": url}})
            tools = {t.name: t for t in (await client.list_tools(cache_mode="refresh")).tools}
            assert tools["home_assistant"].annotations.read_only_hint is False
            result = await client.call_tool("home_assistant", {"action": "turn_on",
                                                               "target": "office lights"})
    assert not result.is_error, result.content
    assert result.content[0].text == "Turned on Office Light (light.office)."
    assert ha.service_calls == [("light", "turn_on", {"entity_id": ["light.office"]})]


async def test_wrong_or_missing_key_is_refused(live: LiveServer) -> None:
    for key, said in (("tater-wrong", "Incorrect API key provided"),
                      ("", "No API key was provided")):
        with pytest.raises(BaseException) as info:
            async with connect(live, key=key) as client:
                await client.list_tools()
        assert f"MCPError: {said}" in _flatten(info.value), _flatten(info.value)
    resp = httpx.post(mcp_url(live), json={"jsonrpc": "2.0", "id": 7, "method": "tools/list"},
                      headers={"Authorization": "Bearer tater-wrong",
                               "Accept": "application/json, text/event-stream"})
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == 'Bearer realm="tater"'
    error = resp.json()
    assert error["id"] == 7 and error["error"]["data"] == {"status": 401, "code": "invalid_api_key"}



async def test_exposure_rules_apply(live: LiveServer) -> None:
    base = {"Authorization": f"Bearer {live.key}", "Accept": "application/json, text/event-stream"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    evil_host = httpx.post(mcp_url(live), json=body, headers={**base, "Host": "evil.example"})
    assert evil_host.status_code == 403
    assert evil_host.json()["error"]["data"]["code"] == "host_not_allowed"
    page = httpx.post(mcp_url(live), json=body, headers={**base, "Origin": "https://evil.example"})
    assert page.status_code == 403 and page.json()["error"]["data"]["code"] == "origin_not_allowed"
    live.settings.update(limits={"auth_failures_per_minute": 2})
    for n in range(2):
        httpx.post(mcp_url(live), json=body, headers={**base, "Authorization": f"Bearer bad-{n}"})
    throttled = httpx.post(mcp_url(live), json=body, headers=base)  # even the right key waits
    assert throttled.status_code == 429 and "Retry-After" in throttled.headers


async def test_setting_turns_the_mcp_server_off(live: LiveServer) -> None:
    live.settings.update(mcp={"server_enabled": False})
    resp = await asyncio.to_thread(
        httpx.post, mcp_url(live), json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Authorization": f"Bearer {live.key}",
                 "Accept": "application/json, text/event-stream"})
    assert resp.status_code == 404 and resp.json()["error"]["data"]["code"] == "mcp_disabled"
    live.settings.update(mcp={"server_enabled": True})
    async with connect(live) as client:
        assert len((await client.list_tools()).tools) == 2


def _flatten(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return " | ".join(_flatten(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


async def test_tools_borrowed_from_mcp_servers_are_not_served_again(live: LiveServer) -> None:
    from app.mcp.tool_verbas import tool_verba
    from app.verbas import VerbaResult

    async def never(server: str, tool: str, args: dict[str, Any], timeout: float) -> VerbaResult:
        raise AssertionError("not called")

    borrowed = tool_verba("other", {"name": "ping", "inputSchema": {"type": "object"}}, never)

    class Borrowed:
        def verbas(self) -> list:
            return [borrowed]

    agent = live.services.context.hydra  # type: ignore[attr-defined]
    agent.verbas.attach(Borrowed())
    live.settings.update(verbas={borrowed.id: {"enabled": True}})
    assert borrowed in agent.verbas.enabled(live.settings.current, agent.secrets)  # Hydra: yes
    async with connect(live) as client:  # MCP clients: no (two Taters must not loop)
        assert {t.name for t in (await client.list_tools()).tools} == {"clock", "calculator"}
