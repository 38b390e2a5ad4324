"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: Anthropic's Messages API.

A thin translation onto the one serving path (:func:`app.server.serving.open_turn`): Direct and
Hydra modes, every runtime, queueing, limits, auth and the request log work as for chat
completions.  Errors on these routes use Anthropic's shape (see :mod:`app.server.errors`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Blueprint, g, jsonify, request
from quart_schema import document_response, validate_request

from app.server.context_access import server_context
from app.server.direct import acquire_routed
from app.server.errors import ApiError
from app.server.framing_messages import MessageReply, error_event, message_events
from app.server.limits import check_text_limits
from app.server.messages_request import chat_messages, chat_request, chat_tools, translate_model
from app.server.protocol_messages import CountTokensRequest, Message, MessagesRequest, MessageTokensCount
from app.server.routing import resolve
from app.server.serving import open_turn, origin_for
from app.server.streaming import sse_response

bp = Blueprint("messages", __name__)


@bp.post("/v1/messages")
@validate_request(MessagesRequest)
@document_response(Message)
async def create_message(data: MessagesRequest) -> Any:
    """Anthropic Messages, streamed (named SSE events) or not."""
    ctx = server_context()
    settings = ctx.settings.current
    provider_request = chat_request(data)
    check_text_limits([m.content for m in provider_request.messages], settings.limits)
    turn = await open_turn(ctx, translate_model(data.model, settings), provider_request, lambda: origin_for(
        request.headers.get("X-Tater-Session"), provider_request.user, g.get("api_key")))
    reply = MessageReply(turn.reported_model, data.stop_sequences)
    if data.stream:
        return await sse_response(
            turn.stream(), lambda items, totals: message_events(reply, items, totals, turn.prompt_tokens),
            b"", error_event=error_event)
    result, extension = await turn.complete()
    return jsonify(reply.message(result, extra=extension.fields))


@bp.post("/v1/messages/count_tokens")
@validate_request(CountTokensRequest)
@document_response(MessageTokensCount)
async def count_tokens(data: CountTokensRequest) -> Any:
    """The prompt's length in the model's own tokens, rendered exactly as ``/v1/messages`` renders
    it (so it equals that request's ``usage.input_tokens`` in Direct mode)."""
    ctx = server_context()
    settings = ctx.settings.current
    messages = chat_messages(data)
    check_text_limits([m.content for m in messages], settings.limits)
    route = resolve(translate_model(data.model, settings), settings)
    model = await acquire_routed(ctx, route)
    n = await asyncio.to_thread(model.count_tokens, messages, chat_tools(data))
    if n is None:
        raise ApiError(400, f"The model '{route.model_id}' cannot count tokens here (its runtime does not "
                       "expose its tokenizer).", code="unsupported", param="model")
    return jsonify({"input_tokens": n})
