"""Hydra's MCP client against a real stdio MCP server (tests/mcp/toolbox_server.py).

A server that exits mid-call, never answers, or writes invalid JSON gives a failed result within
the time limit, with a readable reason, and the next call works (the server is started afresh).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.keystore import SecretStore
from app.mcp.clients import McpClients
from app.settings import SettingsStore
from app.verbas import Origin, VerbaRegistry, VerbaResult

TOOLBOX = Path(__file__).with_name("toolbox_server.py")


def toolbox(name: str = "toolbox", **extra: object) -> dict[str, object]:
    return {"name": name, "transport": "stdio", "command": sys.executable,
            "args": [str(TOOLBOX)], **extra}


@pytest.fixture
def store(tmp_path: Path) -> SettingsStore:
    s = SettingsStore(tmp_path / "cfg", env={})
    s.update(mcp={"servers": [toolbox(env={"TOOLBOX_STARTS_FILE": str(tmp_path / "starts")})]})
    return s


@pytest.fixture
def clients(store: SettingsStore) -> Iterator[McpClients]:
    c = McpClients(store, SecretStore())
    yield c
    c.close()


def starts(store: SettingsStore) -> list[int]:
    path = store.config_dir.parent / "starts"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def call(registry: VerbaRegistry, store: SettingsStore, verba_id: str,
               timeout: float = 10, **args: object) -> VerbaResult:
    v = registry.get(verba_id)
    assert v is not None, [x.id for x in registry.all()]
    ctx = registry.context(v, Origin("s"), store.current, None, timeout)
    return await registry.invoke(v, v.validate(args), ctx, timeout)


def registry_with(clients: McpClients) -> VerbaRegistry:
    reg = VerbaRegistry.discover(None, entry_points=False)
    reg.attach(clients)
    return reg


async def test_tools_become_verbas_off_until_enabled(clients: McpClients,
                                                     store: SettingsStore) -> None:
    assert clients.verbas() == []  # nothing known before the server ever ran
    state = await asyncio.to_thread(clients.refresh, "toolbox")
    assert state.state == "running" and state.tools == ["add", "shout", "crash", "hang", "garbage"]
    reg = registry_with(clients)
    add = reg.get("mcp_toolbox_add")
    assert add is not None and add.source == "MCP server toolbox" and add.acts_on_world
    assert add.parameters["properties"]["a"]["type"] == "integer"
    assert add.parameters["required"] == ["a", "b"]
    assert [v.id for v in reg.enabled(store.current)] == ["clock", "calculator"]
    store.update(verbas={"mcp_toolbox_add": {"enabled": True}})
    assert [v.id for v in reg.enabled(store.current)] == ["clock", "calculator", "mcp_toolbox_add"]
    result = await call(reg, store, "mcp_toolbox_add", a=2, b=3)
    assert result.ok and result.summary == "5"
    # the tool list is remembered: a new manager knows the Verbas without starting the server
    again = McpClients(store, None)
    try:
        assert [v.id for v in again.verbas()][:2] == ["mcp_toolbox_add", "mcp_toolbox_shout"]
        assert again.states()[0].state == "stopped"
    finally:
        again.close()


async def test_server_started_on_demand_and_stopped_on_close(clients: McpClients,
                                                             store: SettingsStore) -> None:
    await asyncio.to_thread(clients.refresh, "toolbox")
    await asyncio.to_thread(clients.stop, "toolbox")
    reg = registry_with(clients)
    first = await call(reg, store, "mcp_toolbox_shout", text="hi")
    assert first.ok and first.summary.startswith("HI! (pid ")
    pid = starts(store)[-1]
    assert f"pid {pid}" in first.summary and alive(pid) and len(starts(store)) == 2
    await asyncio.to_thread(clients.close)
    assert not alive(pid)


async def test_idle_server_is_stopped(clients: McpClients, store: SettingsStore) -> None:
    store.update(mcp={**store.saved.mcp.model_dump(), "idle_stop_seconds": 0.3})
    reg = registry_with(clients)
    await asyncio.to_thread(clients.refresh, "toolbox")
    assert (await call(reg, store, "mcp_toolbox_add", a=1, b=1)).summary == "2"
    pid = starts(store)[-1]
    for _ in range(100):
        if clients.states()[0].state == "stopped" and not alive(pid):
            break
        await asyncio.sleep(0.05)
    assert clients.states()[0].state == "stopped" and not alive(pid)
    assert (await call(reg, store, "mcp_toolbox_add", a=2, b=2)).summary == "4"  # restarted


@pytest.mark.parametrize(("tool", "said"), [
    ("crash", "stopped during the call to crash (its last words: toolbox: crashing on purpose)"),
    ("hang", "did not answer the call to hang in time"),
    ("garbage", "sent output that is not valid JSON-RPC during the call to garbage"),
])
async def test_misbehaving_server_fails_the_call_and_recovers(
        clients: McpClients, store: SettingsStore, tool: str, said: str) -> None:
    reg = registry_with(clients)
    await asyncio.to_thread(clients.refresh, "toolbox")
    pid = starts(store)[-1]
    started = time.monotonic()
    result = await call(reg, store, f"mcp_toolbox_{tool}", timeout=3)
    took = time.monotonic() - started
    assert not result.ok and said in result.summary, result.summary
    assert took < 3.2  # within the tool time limit
    assert clients.states()[0].state == "failed"
    for _ in range(200):  # the broken server is stopped in the background
        if not alive(pid):
            break
        await asyncio.sleep(0.05)
    assert not alive(pid)
    after = await call(reg, store, "mcp_toolbox_add", a=20, b=22)
    assert after.ok and after.summary == "42"  # the next call starts it afresh
    assert len(starts(store)) == 2


async def test_a_hung_server_does_not_block_another(clients: McpClients,
                                                    store: SettingsStore) -> None:
    store.update(mcp={"servers": [toolbox("slow"), toolbox("quick")]})
    await asyncio.to_thread(clients.refresh, "slow")
    await asyncio.to_thread(clients.refresh, "quick")
    reg = registry_with(clients)
    hung = asyncio.create_task(call(reg, store, "mcp_slow_hang", timeout=3))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    quick = await call(reg, store, "mcp_quick_add", a=1, b=2)
    assert quick.summary == "3" and time.monotonic() - started < 1.5
    assert not hung.done()
    assert not (await hung).ok


async def test_unstartable_server_is_a_readable_failure(clients: McpClients,
                                                        store: SettingsStore) -> None:
    store.update(mcp={"servers": [{"name": "ghost", "command": "/nonexistent/mcp-server"}]})
    state = await asyncio.to_thread(clients.refresh, "ghost", 10)
    assert state.state == "failed" and "could not be started" in (state.error or "")
    assert "nonexistent" in (state.error or "") or "No such file" in (state.error or "")


async def test_server_stuck_in_the_handshake_is_stopped(clients: McpClients,
                                                       store: SettingsStore) -> None:
    starts_file = str(store.config_dir.parent / "starts")
    store.update(mcp={"servers": [toolbox(env={"TOOLBOX_MUTE": "1",
                                               "TOOLBOX_STARTS_FILE": starts_file})]})
    state = await asyncio.to_thread(clients.refresh, "toolbox", 3)
    assert state.state == "failed" and "did not start within 3 s" in (state.error or "")
    pid = starts(store)[-1]
    for _ in range(200):
        if not alive(pid):
            break
        await asyncio.sleep(0.05)
    assert not alive(pid)
