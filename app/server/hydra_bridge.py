"""Hydra turns over HTTP: the agent's events as an OpenAI reply (streamed or whole)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from quart import jsonify

from app.keystore import key_id
from app.providers.base import ChatChunk, ChatRequest
from app.server.context import ServerContext
from app.server.errors import ApiError
from app.server.hardening import admit_request
from app.server.routing import HYDRA_MODEL, Route


def origin_for(session_header: str | None, user: str | None, api_key: str | None) -> Any:
    """Who is asking, from the request only: session header, else ``user``, else the key's id."""
    from app.verbas.base import Origin

    kid = key_id(api_key) if api_key else None
    session = (session_header or "").strip() or (f"user:{user}" if user else f"key:{kid or 'anonymous'}")
    return Origin(session_id=session[:200], user=user, api_key_id=kid, platform="openai_api")


async def _as_stream_items(events: AsyncIterator[Any]) -> AsyncIterator[ChatChunk | str | dict]:
    from app.hydra import Progress, TurnReport

    try:
        async for ev in events:
            if isinstance(ev, Progress):
                yield ev.text
            elif isinstance(ev, TurnReport):
                yield {"tater": ev.to_dict()}
            else:
                yield ev
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def hydra_turn(ctx: ServerContext, route: Route, request: ChatRequest, stream: bool,
                     include_usage: bool, origin: Any) -> Any:
    """Run one Hydra turn on the route's model."""
    from app.server.routes_chat import Reply, stream_response

    agent = ctx.hydra
    if agent is None:
        raise ApiError(501, "Hydra mode is not available in this installation (the agent failed to "
                       "start; see the log). Use model 'tater/direct' for Direct mode.",
                       code="hydra_not_available")
    model = await ctx.hub.acquire(route.model_id)
    # The turn holds the model's queue slot throughout (its calls are one conversation).
    ticket = await admit_request(route.model_id, model)
    reply = Reply(HYDRA_MODEL)
    if stream:
        events = ticket.hold(_as_stream_items(agent.run(model, request, origin)))  # type: ignore[arg-type]
        return await stream_response(reply, events, include_usage)
    async with ticket:
        result, report = await agent.complete(model, request, origin)
    return jsonify(reply.completion(result, extra={"tater": report.to_dict()}))
