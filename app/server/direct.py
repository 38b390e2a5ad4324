"""The model a non-chat request runs on (``/v1/completions``, ``/v1/embeddings``).

These endpoints have no Hydra mode: an alias or an empty ``model`` means the active model,
a configured id means that row.
"""

from __future__ import annotations

from dataclasses import dataclass

from quart import g

from app.providers.base import ChatModel
from app.server.context_access import server_context
from app.server.routing import resolve


@dataclass
class DirectModel:
    """A loaded model and its row id."""

    model_id: str
    model: ChatModel


async def direct_model(requested: str | None) -> DirectModel:
    """Resolve ``requested`` (404 / 503 as the chat route does) and load it."""
    ctx = server_context()
    route = resolve(requested, ctx.settings.current)
    tracker = g.get("tracker")
    if tracker:
        tracker.model, tracker.mode = route.model_id, "direct"
    return DirectModel(route.model_id, await ctx.hub.acquire(route.model_id))
