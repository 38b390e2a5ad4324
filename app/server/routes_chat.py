"""``POST /v1/chat/completions``: Direct mode on a provider, or a Hydra turn."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, g, jsonify, request
from quart_schema import document_response, validate_request

from app.providers.base import ChatRequest
from app.server.context_access import server_context
from app.server.errors import ApiError
from app.server.framing import Reply, stream_response
from app.server.limits import check_message_limits
from app.server.messages import normalise_messages
from app.server.protocol import ChatCompletion, ChatCompletionRequest
from app.server.serving import open_turn, origin_for

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
        reasoning_effort=data.reasoning_effort,
        thinking_budget=data.thinking_budget,
    )


@bp.post("/v1/chat/completions")
@validate_request(ChatCompletionRequest)
@document_response(ChatCompletion)
async def chat_completions(data: ChatCompletionRequest) -> Any:
    """OpenAI chat completions, streamed (SSE) or not."""
    ctx = server_context()
    check_message_limits(data, ctx.settings.current.limits)
    chat_request = to_chat_request(data)
    turn = await open_turn(ctx, data.model, chat_request, lambda: origin_for(
        request.headers.get("X-Tater-Session"), data.user, g.get("api_key")))
    reply = Reply(turn.reported_model, ctx.settings.current.server.reasoning_field,
                  legacy_functions=data.uses_legacy_functions)
    if data.stream:
        include_usage = bool(data.stream_options and data.stream_options.include_usage)
        return await stream_response(reply, turn.stream(), include_usage)
    result, extension = await turn.complete()
    # jsonify: a Response (quart-schema's dict conversion is slow)
    return jsonify(reply.completion(result, extra=extension.fields))
