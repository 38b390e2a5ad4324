"""A Verba call gets the time left in the turn, not the whole per-tool limit."""

from __future__ import annotations

import asyncio

from app.hydra import Origin
from app.hydra.turn import Turn, VerbaCall
from app.keystore import SecretStore
from app.providers.base import ChatMessage, ChatRequest
from app.settings import SettingsStore
from app.verbas import VerbaContext, VerbaRegistry, verba
from tests.fakes import ScriptedModel


async def test_a_call_near_the_turn_deadline_gets_only_the_time_left(
        store: SettingsStore, registry: VerbaRegistry, origin: Origin) -> None:
    store.update(hydra={"tool_timeout_seconds": 20, "turn_timeout_seconds": 60})
    seen: list[float] = []

    @verba(id="sleepy", name="Sleepy", description="Ignores its time limit.")
    async def sleepy(ctx: VerbaContext) -> str:
        seen.append(ctx.timeout)
        await asyncio.sleep(10)
        return "woke up"

    registry.add(sleepy)
    loop = asyncio.get_running_loop()
    turn = Turn(store.current, registry, SecretStore(), ScriptedModel([]),
                ChatRequest([ChatMessage("user", "nap")]), origin, lambda _event: None)
    turn.deadline = loop.time() + 0.3  # as if the turn had run for 59.7 s already
    started = loop.time()
    result = await turn.run_verba(VerbaCall(sleepy, {}, []))
    elapsed = loop.time() - started
    assert 0.2 < elapsed < 1.5  # cut at the turn's deadline, not after 20 s (or the 10 s sleep)
    assert not result.ok and result.summary.startswith("Sleepy did not finish within 0.")
    assert len(seen) == 1 and 0.2 < seen[0] <= 0.3  # the handler is told the same limit
