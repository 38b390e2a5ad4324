"""The model a request runs on, acquired the one way every route uses.

``/v1/completions`` and ``/v1/embeddings`` have no Hydra mode: an alias or an empty ``model``
means the active model, a configured id means that row.  The chat route resolves the mode itself
and hands its route to :func:`acquire_routed`.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.providers.base import ChatModel
from app.server.context import ServerContext
from app.server.context_access import server_context
from app.server.routing import Route, resolve
from app.server.tracking import track_model_ready, track_route


@dataclass
class DirectModel:
    """A loaded model and its row id."""

    model_id: str
    model: ChatModel


async def acquire_routed(ctx: ServerContext, route: Route) -> ChatModel:
    """Load (or reuse) the route's model, telling the request log which model ran and when it
    was ready (so load time is not counted as generation time)."""
    track_route(route.model_id, route.mode)
    model = await ctx.hub.acquire(route.model_id)
    track_model_ready()
    return model


async def direct_model(requested: str | None) -> DirectModel:
    """Resolve ``requested`` (404 / 503 as the chat route does) and load it, in Direct mode."""
    ctx = server_context()
    route = resolve(requested, ctx.settings.current)
    direct = Route("direct", route.model_id, route.requested)
    return DirectModel(route.model_id, await acquire_routed(ctx, direct))
