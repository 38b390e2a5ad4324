"""Hydra's MCP client against the published reference server, over stdio and Streamable HTTP."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.hydra import HydraAgent, Origin, StepRecord
from app.keystore import SecretStore
from app.mcp.clients import McpClients
from app.mcp.config import secret_entry
from app.providers.base import ChatMessage, ChatRequest
from app.settings import SettingsStore
from app.verbas import VerbaRegistry
from tests.conftest import free_port
from tests.fakes import ScriptedModel
from tests.hydra.support import call, plan
from tests.mcp.everything import everything_entry, node


@pytest.fixture
def store(tmp_path: Path) -> SettingsStore:
    s = SettingsStore(tmp_path / "cfg", env={})
    s.update(mode="hydra", hydra_tools_allowed=True)
    return s



@pytest.fixture
def everything_http() -> Iterator[str]:
    """``server-everything streamableHttp`` on a free port; yields its /mcp URL."""
    port = free_port()
    proc = subprocess.Popen([node(), str(everything_entry()), "streamableHttp"],
                            env={**os.environ, "PORT": str(port)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        for _ in range(300):
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


async def run_turn(store: SettingsStore, verba_id: str, arguments: dict[str, object],
                   question: str) -> tuple[ScriptedModel, list[StepRecord], str]:
    secrets = SecretStore()
    clients = McpClients(store, secrets)
    try:
        state = await asyncio.to_thread(clients.refresh, "everything", 90)
        assert state.state == "running", state
        registry = VerbaRegistry.discover(None, entry_points=False)
        registry.attach(clients)
        store.update(verbas={verba_id: {"enabled": True}})
        model = ScriptedModel([plan((verba_id, "use the reference server")),
                               call(verba_id, **arguments), "Here you go."])
        agent = HydraAgent(store, registry, secrets, mcp=clients)
        result, report = await agent.complete(
            model, ChatRequest([ChatMessage("user", question)]), Origin("sess-mcp"))
        return model, report.steps, result.text
    finally:
        await asyncio.to_thread(clients.close)


async def test_hydra_calls_server_everything_over_stdio(store: SettingsStore) -> None:
    store.update(mcp={"servers": [{"name": "everything", "command": node(),
                                   "args": [str(everything_entry()), "stdio"]}]})
    model, steps, text = await run_turn(store, "mcp_everything_get_sum", {"a": 2, "b": 3},
                                        "What is 2 plus 3?")
    assert steps == [StepRecord("mcp_everything_get_sum", True, "The sum of 2 and 3 is 5.")]
    planner_enum = model.calls[0].response_format["json_schema"]["schema"]["properties"][
        "steps"]["items"]["properties"]["verba"]["enum"]
    assert "mcp_everything_get_sum" in planner_enum
    assert "Get Sum Tool (everything) (ok): The sum of 2 and 3 is 5." in model.system(2)
    assert text == "Here you go."


async def test_hydra_calls_server_everything_over_streamable_http(
        store: SettingsStore, everything_http: str) -> None:
    store.update(mcp={"servers": [{"name": "everything", "transport": "http",
                                   "url": everything_http,
                                   "secret_names": ["Authorization"]}]})
    SecretStore().set(secret_entry("everything", "header", "Authorization"), "Bearer s3cret")
    _, steps, _ = await run_turn(store, "mcp_everything_echo", {"message": "hello over http"},
                                 "Echo hello over http")
    assert steps == [StepRecord("mcp_everything_echo", True, "Echo: hello over http")]
    assert "s3cret" not in store.path.read_text()  # the header's value lives in the keyring
