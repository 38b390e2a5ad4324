"""The one serving path behind every chat-shaped protocol front-end (Direct and Hydra).

Chat Completions, Responses and Messages each translate their body into a provider
:class:`~app.providers.base.ChatRequest`, then call :func:`open_turn`: it resolves the mode and
model (``routing.resolve``), loads the model, checks the prompt against its context and takes a
queue slot.  The returned :class:`Turn` is then either streamed (:meth:`Turn.stream`, typed
:data:`TurnItem` events) or completed (:meth:`Turn.complete`), in Direct mode on the model or as
a Hydra turn.  Each front-end only frames the result in its own protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.keystore import key_id
from app.providers.base import ChatChunk, ChatModel, ChatRequest, ChatResult
from app.server.context import ServerContext
from app.server.direct import acquire_routed
from app.server.errors import ApiError
from app.server.hardening import admit_request
from app.server.limits import fit_to_context
from app.server.queueing import Ticket
from app.server.routing import Route, resolve
from app.server.tracking import track_usage

if TYPE_CHECKING:
    from app.hydra.agent import HydraAgent


@dataclass(frozen=True)
class ProgressNote:
    """A human-readable progress line (Hydra's steps); chat sends it as an SSE comment."""

    text: str


@dataclass(frozen=True)
class ReplyExtension:
    """Extra top-level fields for the final reply (Hydra's ``tater`` step report)."""

    fields: dict[str, Any] = field(default_factory=dict)


TurnItem = ChatChunk | ProgressNote | ReplyExtension
"""What a streamed turn yields: model chunks, progress notes, and reply extensions."""


@dataclass
class Turn:
    """One admitted request on a loaded model, ready to stream or to complete."""

    route: Route
    reported_model: str
    """The ``model`` a reply names."""
    ticket: Ticket
    _stream: Callable[[], AsyncIterator[TurnItem]]
    _complete: Callable[[], Awaitable[tuple[ChatResult, ReplyExtension]]]
    prompt_tokens: int | None = None
    """The prompt's length as counted when it was fitted to the context (Direct mode; None when
    the runtime cannot count it cheaply)."""

    def stream(self) -> AsyncIterator[TurnItem]:
        """The turn's items; the queue slot is held until the stream ends or is closed."""
        return self.ticket.hold(self._stream())  # type: ignore[arg-type]

    async def complete(self) -> tuple[ChatResult, ReplyExtension]:
        """The whole reply and its extension fields (the slot is released afterwards)."""
        async with self.ticket:
            result, extension = await self._complete()
        track_usage(result.usage, result.first_token_at)
        return result, extension


async def open_turn(ctx: ServerContext, requested_model: str | None, request: ChatRequest,
                    origin: Callable[[], Any]) -> Turn:
    """Resolve, load, fit and admit ``request``; raises ApiError / ProviderError (4xx/5xx).

    ``origin`` builds the Hydra :class:`~app.verbas.base.Origin` (only called in Hydra mode)."""
    route = resolve(requested_model, ctx.settings.current)
    if route.mode == "hydra":
        refuse_client_tools(request)
        if request.logit_bias:
            raise ApiError(400, "logit_bias is not supported in Hydra mode (its calls are its own): "
                           "use Direct mode.", code="unsupported", param="logit_bias")
        agent = hydra_agent(ctx)
        model = await acquire_routed(ctx, route)
        stream, complete = hydra_parts(agent, model, request, origin())
        ticket = await admit_request(route.model_id, model)
        return Turn(route, route.model_id, ticket, stream, complete)  # the model that ran
    model = await acquire_routed(ctx, route)
    model.check_request(request)  # a refused schema names its limit, before the length check
    prompt_tokens = await fit_to_context(model, request)
    ticket = await admit_request(route.model_id, model)

    async def complete() -> tuple[ChatResult, ReplyExtension]:
        return await model.complete(request), ReplyExtension()

    return Turn(route, route.model_id, ticket, lambda: model.stream(request), complete, prompt_tokens)


# --- Hydra turns: the agent's events as typed turn items ---

def origin_for(session_header: str | None, user: str | None, api_key: str | None) -> Any:
    """Who is asking, from the request only: session header, else ``user``, else the key's id."""
    from app.verbas.base import Origin

    kid = key_id(api_key) if api_key else None
    session = (session_header or "").strip() or (f"user:{user}" if user else f"key:{kid or 'anonymous'}")
    return Origin(session_id=session[:200], user=user, api_key_id=kid, platform="openai_api")


async def _as_turn_items(events: AsyncIterator[Any]) -> AsyncIterator[TurnItem]:
    from app.hydra import Progress, TurnReport

    try:
        async for ev in events:
            if isinstance(ev, Progress):
                yield ProgressNote(ev.text)
            elif isinstance(ev, TurnReport):
                yield ReplyExtension({"tater": ev.to_dict()})
            else:
                yield ev
    finally:
        await events.aclose()  # type: ignore[attr-defined]


def refuse_client_tools(request: ChatRequest) -> None:
    """Hydra runs its own Verbas and never the client's tools: a request that offers tools is a 400
    (silently dropping them would leave an agent waiting for a call that cannot come)."""
    if request.tools:
        raise ApiError(400, "Hydra mode (model 'tater/hydra', or mode 'hydra' in the settings) "
                       "acts through Tater's own Verba tools and cannot call the client's tools. "
                       "Send the request to 'tater/direct' (or a model id) to let the model call "
                       "your tools, or leave 'tools' out to let Hydra answer.",
                       code="tools_not_supported_in_hydra", param="tools")


def hydra_agent(ctx: ServerContext) -> HydraAgent:
    """The Hydra agent, or a 501 when it is not available."""
    if ctx.hydra is None:
        raise ApiError(501, "Hydra mode is not available in this installation (the agent failed to "
                       "start; see the log). Use model 'tater/direct' for Direct mode.",
                       code="hydra_not_available")
    return ctx.hydra


def hydra_parts(agent: HydraAgent, model: ChatModel, request: ChatRequest, origin: Any) -> tuple[
        Callable[[], AsyncIterator[TurnItem]], Callable[[], Awaitable[tuple[ChatResult, ReplyExtension]]]]:
    """The stream and complete callables of a Hydra turn on ``model`` (the turn holds the model's
    queue slot throughout: its calls are one conversation)."""

    def stream() -> AsyncIterator[TurnItem]:
        return _as_turn_items(agent.run(model, request, origin))

    async def complete() -> tuple[ChatResult, ReplyExtension]:
        result, report = await agent.complete(model, request, origin)
        return result, ReplyExtension({"tater": report.to_dict()})

    return stream, complete
