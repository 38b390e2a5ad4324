"""The Hydra agent: runs a turn as a task and streams its events with keep-alives."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from app.hydra.events import HydraEvent, Progress, TurnReport
from app.hydra.turn import Turn
from app.providers.base import Accumulator, ChatChunk, ChatModel, ChatRequest, ChatResult
from app.verbas.base import Origin

if TYPE_CHECKING:
    from app.keystore import SecretStore
    from app.mcp.clients import McpClients
    from app.settings import SettingsStore
    from app.verbas.registry import VerbaRegistry

_END = object()


class HydraAgent:
    """Hydra: answers a chat turn, acting through enabled Verbas when tools are allowed."""

    def __init__(self, settings_store: SettingsStore, verbas: VerbaRegistry,
                 secrets: SecretStore | None = None, *, heartbeat_seconds: float = 5.0,
                 mcp: McpClients | None = None) -> None:
        self.settings_store = settings_store
        self.verbas = verbas
        self.secrets = secrets
        self.mcp = mcp  # the MCP servers whose tools are Verbas (attached to ``verbas``)
        self.heartbeat_seconds = heartbeat_seconds

    async def run(self, model: ChatModel, request: ChatRequest,
                  origin: Origin) -> AsyncIterator[HydraEvent]:
        """Progress lines, the composer's chunks (the last one with finish_reason and the
        usage of every internal call), then one :class:`TurnReport`.

        Raises ProviderError (e.g. no user message, or a model failure).  Stopping the
        iteration early cancels the turn.
        """
        queue: asyncio.Queue[Any] = asyncio.Queue()
        turn = Turn(self.settings_store.current, self.verbas, self.secrets, model, request,
                    origin, queue.put_nowait)

        async def work() -> None:
            try:
                await turn.run()
            finally:
                queue.put_nowait(_END)

        task = asyncio.create_task(work(), name="hydra-turn")
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), self.heartbeat_seconds)
                except TimeoutError:
                    yield Progress("Hydra is still working…")
                    continue
                if item is _END:
                    break
                yield item
            await task  # re-raises a failure of the turn
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def complete(self, model: ChatModel, request: ChatRequest,
                       origin: Origin) -> tuple[ChatResult, TurnReport]:
        """The whole answer and the turn report (no streaming)."""
        answer, report = Accumulator(), None
        async for event in self.run(model, request, origin):
            if isinstance(event, ChatChunk):
                answer.add(event)
            elif isinstance(event, TurnReport):
                report = event
        if report is None:  # pragma: no cover - a turn always ends with a report
            raise RuntimeError("Hydra turn ended without a report")
        # the answer's chunks carry no logprobs (Hydra's model calls are its own): none reported
        return answer.result(replace(request, logprobs=False)), report
