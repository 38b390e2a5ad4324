"""Hydra: Tater's agent mode — plan, act through Verbas, answer.

The server builds an :class:`Origin` from the request and calls :meth:`HydraAgent.run`
(streaming) or :meth:`HydraAgent.complete`.

The client's ``tool_choice`` steers Hydra's Verbas: ``"none"`` answers without tools,
``"required"`` makes the planner pick at least one step, and ``{"type": "function",
"function": {"name": <Verba id>}}`` runs that Verba for the latest message (no planner);
one that cannot be honoured raises :class:`HydraRequestError` (400).  The client's own
``tools`` are never run by Hydra.  Doer calls use native tool calling when the model has a
true ``ChatModel.native_tool_calls`` (or ``settings.hydra.tool_protocol == "native"``), and
the strict JSON protocol (``response_format`` json_schema, grammar-enforced where the
runtime can) otherwise.
"""

from __future__ import annotations

from app.hydra.agent import HydraAgent
from app.hydra.events import HydraEvent, HydraRequestError, Progress, StepRecord, TurnReport
from app.verbas.base import Origin

__all__ = ["HydraAgent", "HydraEvent", "HydraRequestError", "Origin",
           "Progress", "StepRecord", "TurnReport"]
