"""``POST /v1/chat/completions``: Direct mode on a provider, or a Hydra turn."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, Response, g, jsonify, request
from quart_schema import document_response, validate_request

from app.providers.base import ChatChunk, ChatRequest, ChatResult, Usage
from app.server.context_access import server_context
from app.server.errors import ApiError
from app.server.hardening import admit_request
from app.server.limits import check_message_limits, fit_to_context
from app.server.messages import normalise_messages
from app.server.protocol import ChatCompletion, ChatCompletionRequest
from app.server.routing import resolve
from app.server.sse import comment, event
from app.server.streaming import StreamTotals, sse_response

bp = Blueprint("chat", __name__)


def to_chat_request(data: ChatCompletionRequest) -> ChatRequest:
    """Validated API body -> provider request (messages normalised)."""
    messages = normalise_messages(data.messages)
    if not messages:
        raise ApiError(400, "Every message is empty: send at least one message with text content.",
                       code="invalid_value", param="messages")
    if data.n is not None and data.n > 1:
        raise ApiError(400, "n > 1 is not supported: send n separate requests.", code="unsupported_value",
                       param="n")
    return ChatRequest(
        messages=messages,
        temperature=1.0 if data.temperature is None else data.temperature,
        top_p=1.0 if data.top_p is None else data.top_p,
        max_tokens=data.token_limit,
        stop=data.stop_list,
        seed=data.seed,
        presence_penalty=data.presence_penalty or 0.0,
        frequency_penalty=data.frequency_penalty or 0.0,
        user=data.user,
        tools=data.tools_list,
        tool_choice=data.tool_choice_value,
        parallel_tool_calls=data.parallel_tool_calls,
        response_format=data.response_format_dict,
        logprobs=bool(data.logprobs),
        top_logprobs=data.top_logprobs,
        logit_bias=data.logit_bias_ids,
    )


class Reply:
    """Builds OpenAI response objects for one request."""

    def __init__(self, model: str) -> None:
        self.id = "chatcmpl-" + uuid.uuid4().hex
        self.created = int(time.time())
        self.model = model

    def completion(self, result: ChatResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": result.text}
        if result.tool_calls:
            message["tool_calls"] = result.tool_calls
            message["content"] = result.text or None
        body: dict[str, Any] = {
            "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": result.finish_reason,
                         "logprobs": {"content": result.logprobs} if result.logprobs else None}],
            "usage": result.usage.to_dict(),
        }
        if extra:
            body.update(extra)
        return body

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None,
              logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason,
                             "logprobs": {"content": logprobs} if logprobs else None}]}

    def usage_chunk(self, usage: Usage) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": usage.to_dict()}


def chunk_delta(c: ChatChunk) -> dict[str, Any] | None:
    """The ``delta`` for a provider chunk, or None when it carries nothing to send."""
    delta: dict[str, Any] = {}
    if c.text:
        delta["content"] = c.text
    if c.tool_calls:
        calls = []
        for t in c.tool_calls:
            if not (t.id or t.name or t.arguments):
                continue  # nothing to say (the SDK's stream helper wants a function on each)
            frag: dict[str, Any] = {"index": t.index}
            if t.id:
                frag["id"] = t.id
                frag["type"] = "function"
            fn: dict[str, Any] = {"name": t.name} if t.name else {}
            fn["arguments"] = t.arguments
            frag["function"] = fn
            calls.append(frag)
        if calls:
            delta["tool_calls"] = calls
    return delta or None


Streamed = ChatChunk | str | dict
"""What the chat framer accepts: provider chunks, progress comments (str), and extension fields
(dict) to put on the final chunk (Hydra's step report)."""


async def chat_events(reply: Reply, items: AsyncIterator[Streamed], totals: StreamTotals,
                      include_usage: bool) -> AsyncIterator[bytes]:
    """OpenAI ``chat.completion.chunk`` events: role first, deltas, finish, optional usage."""
    finish = "stop"
    extension: dict[str, Any] = {}
    yield event(reply.chunk({"role": "assistant", "content": ""}))
    async for c in items:
        if isinstance(c, str):
            yield comment(c)
            continue
        if isinstance(c, dict):
            extension.update(c)
            continue
        delta = chunk_delta(c)
        if delta:
            yield event(reply.chunk(delta, logprobs=c.logprobs))
        if c.finish_reason:
            finish = c.finish_reason
        if c.usage:
            totals.usage = c.usage
    yield event({**reply.chunk({}, finish), **extension})
    if include_usage:
        yield event(reply.usage_chunk(totals.usage))


async def stream_response(reply: Reply, chunks: AsyncIterator[Streamed], include_usage: bool) -> Response:
    """A streamed chat reply; errors before the first chunk still get a proper HTTP status."""
    return await sse_response(chunks, lambda items, totals: chat_events(reply, items, totals, include_usage))


@bp.post("/v1/chat/completions")
@validate_request(ChatCompletionRequest)
@document_response(ChatCompletion)
async def chat_completions(data: ChatCompletionRequest) -> Any:
    """OpenAI chat completions, streamed (SSE) or not."""
    ctx = server_context()
    check_message_limits(data, ctx.settings.current.limits)
    chat_request = to_chat_request(data)
    route = resolve(data.model, ctx.settings.current)
    tracker = g.get("tracker")
    if tracker:
        tracker.model, tracker.mode = route.model_id, route.mode
    include_usage = bool(data.stream_options and data.stream_options.include_usage)
    if route.mode == "hydra":
        from app.server.hydra_bridge import hydra_turn, origin_for

        if chat_request.logit_bias:
            raise ApiError(400, "logit_bias is not supported in Hydra mode (its calls are its own): "
                           "use Direct mode.", code="unsupported", param="logit_bias")

        origin = origin_for(request.headers.get("X-Tater-Session"), data.user, g.get("api_key"))
        return await hydra_turn(ctx, route, chat_request, bool(data.stream), include_usage, origin)
    model = await ctx.hub.acquire(route.model_id)
    await fit_to_context(model, chat_request)
    ticket = await admit_request(route.model_id, model)
    reply = Reply(route.model_id)
    if data.stream:
        return await stream_response(reply, ticket.hold(model.stream(chat_request)), include_usage)
    async with ticket:
        result = await model.complete(chat_request)
    if tracker:
        tracker.usage = result.usage
    return jsonify(reply.completion(result))  # a Response: quart-schema's dict conversion is slow
