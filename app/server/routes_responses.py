"""OpenAI's Responses API: ``POST /v1/responses`` (streamed or not), and the stored responses
(``GET`` / ``DELETE /v1/responses/{id}``, ``GET /v1/responses/{id}/input_items``).

A thin front-end on the one serving path (:func:`app.server.serving.open_turn`): the request is
translated by :mod:`app.server.responses_input`, framed by :mod:`app.server.responses_framing`,
and kept in the :class:`~app.server.response_store.ResponseStore` when ``store`` is true (the
default) so that ``previous_response_id`` continues the conversation.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, g, jsonify, request
from quart_schema import document_response, validate_querystring, validate_request

from app.providers.base import ChatRequest
from app.server.context import ServerContext
from app.server.context_access import server_context
from app.server.errors import ApiError
from app.server.protocol_responses import (
    DeletedResponse,
    InputItemList,
    InputItemsQuery,
    ResponseCreateRequest,
    ResponseObject,
)
from app.server.response_store import StoredResponse
from app.server.responses_framing import ResponseFrame, new_id, response_events
from app.server.responses_input import Offered, offered_tools, to_chat_request
from app.server.routing import resolve
from app.server.serving import Turn, open_turn, origin_for
from app.server.streaming import sse_response
from app.settings import LimitSettings

bp = Blueprint("responses", __name__)

ITEM_ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco",
                  "custom_tool_call": "ctc", "custom_tool_call_output": "ctco", "reasoning": "rs"}


def input_items(data: ResponseCreateRequest) -> list[dict[str, Any]]:
    """This request's input as stored items, each with an id (a string is one user message)."""
    if isinstance(data.input, str):
        raw = [{"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": data.input}]}] if data.input else []
    else:
        raw = [item.model_dump(by_alias=True, exclude_none=True) for item in data.input]
    return [{**item, "id": item.get("id") or new_id(ITEM_ID_PREFIX.get(item.get("type", ""), "item"))}
            for item in raw]


def check_item_limits(count: int, longest: int, limits: LimitSettings) -> None:
    """The chat endpoint's message limits, applied to the conversation's items."""
    if count > limits.max_messages:
        raise ApiError(400, f"Too many input items: {count} (the limit is {limits.max_messages}).",
                       code="too_many_messages", param="input")
    if longest > limits.max_content_chars:
        raise ApiError(400, f"An input item is {longest} characters long (the limit is "
                       f"{limits.max_content_chars}).", code="content_too_long", param="input")


def echoed_fields(data: ResponseCreateRequest, offered: Offered) -> dict[str, Any]:
    """The request fields a ``response`` object repeats."""
    fmt = data.text.format.model_dump(by_alias=True, exclude_none=True) if data.text and data.text.format \
        else {"type": "text"}
    choice = data.tool_choice
    return {
        "instructions": data.instructions, "max_output_tokens": data.max_output_tokens,
        "parallel_tool_calls": True if data.parallel_tool_calls is None else data.parallel_tool_calls,
        "previous_response_id": data.previous_response_id,
        "reasoning": {"effort": data.reasoning.effort if data.reasoning else None,
                      "summary": data.reasoning.summary if data.reasoning else None},
        "store": data.store is not False,
        "temperature": 1.0 if data.temperature is None else data.temperature,
        "text": {"format": fmt},
        "tool_choice": choice.model_dump(exclude_none=True) if choice is not None and
        not isinstance(choice, str) else (choice or "auto"),
        "tools": offered.echoed, "top_p": 1.0 if data.top_p is None else data.top_p,
        "truncation": data.truncation or "disabled", "user": data.user,
        "metadata": data.metadata or {},
    }


def not_found(response_id: str, param: str | None = None) -> ApiError:
    return ApiError(404, f"Response with id '{response_id}' not found: it is unknown, was deleted, was "
                    "created with store=false, or has expired from this server's response store "
                    "(Settings: responses.max_responses, max_bytes, ttl_minutes).",
                    code="response_not_found", param=param)


def drop_oldest_turn(chat_request: ChatRequest) -> bool:
    """``truncation: auto``: drop the oldest message after the leading system messages (with the
    tool results that answer it, which cannot stand alone); False when only the last is left."""
    messages = chat_request.messages
    first = next((i for i, m in enumerate(messages) if m.role != "system"), len(messages))
    if len(messages) - first <= 1:
        return False
    end = first + 1
    while end < len(messages) - 1 and messages[end].role == "tool":
        end += 1
    del messages[first:end]
    return True


async def open_fitted_turn(ctx: ServerContext, data: ResponseCreateRequest,
                           chat_request: ChatRequest) -> Turn:
    """:func:`open_turn`; with ``truncation: auto`` a conversation too long for the model's
    context loses its oldest turns until it fits (``disabled``, the default, is a 400)."""
    while True:
        try:
            return await open_turn(ctx, data.model, chat_request, lambda: origin_for(
                request.headers.get("X-Tater-Session"), data.user, g.get("api_key")))
        except ApiError as exc:
            if (exc.code != "context_length_exceeded" or data.truncation != "auto"
                    or not drop_oldest_turn(chat_request)):
                raise


@bp.post("/v1/responses")
@validate_request(ResponseCreateRequest)
@document_response(ResponseObject)
async def create_response(data: ResponseCreateRequest) -> Any:
    """Create a model response, streamed (SSE events) or not."""
    ctx = server_context()
    store = ctx.responses
    history: list[dict[str, Any]] = []
    if data.previous_response_id:
        previous = store.get(data.previous_response_id)
        if previous is None:
            raise not_found(data.previous_response_id, "previous_response_id")
        history = previous.conversation()
    items = input_items(data)
    offered = offered_tools(data)
    hydra = resolve(data.model, ctx.settings.current).mode == "hydra"
    chat_request = to_chat_request(data, history + items, offered, hydra=hydra)
    check_item_limits(len(chat_request.messages), max(len(m.content) for m in chat_request.messages),
                      ctx.settings.current.limits)
    turn = await open_fitted_turn(ctx, data, chat_request)
    frame = ResponseFrame(turn.reported_model, echoed_fields(data, offered), offered.custom)

    def keep(response: dict[str, Any]) -> None:
        if data.store is not False:
            store.put(StoredResponse(response, items, history))

    if data.stream:
        return await sse_response(turn.stream(), lambda it, totals: response_events(
            frame, it, totals, keep), done=b"")
    result, extension = await turn.complete()
    body = frame.whole(result, extension.fields)
    keep(body)
    return jsonify(body)


@bp.get("/v1/responses/<response_id>")
@document_response(ResponseObject)
async def get_response(response_id: str) -> Any:
    """A stored response."""
    entry = server_context().responses.get(response_id)
    if entry is None:
        raise not_found(response_id)
    return jsonify(entry.response)


@bp.delete("/v1/responses/<response_id>")
@document_response(DeletedResponse)
async def delete_response(response_id: str) -> Any:
    """Forget a stored response (follow-ups naming it get a 404)."""
    if not server_context().responses.delete(response_id):
        raise not_found(response_id)
    return jsonify({"id": response_id, "object": "response", "deleted": True})


@bp.get("/v1/responses/<response_id>/input_items")
@validate_querystring(InputItemsQuery)
@document_response(InputItemList)
async def list_input_items(response_id: str, query_args: InputItemsQuery) -> Any:
    """The items that made a stored response's input (earlier turns included), newest first by
    default; ``after`` / ``before`` page by item id."""
    entry = server_context().responses.get(response_id)
    if entry is None:
        raise not_found(response_id)
    items = [*entry.history, *entry.input_items]
    if query_args.order == "desc":
        items.reverse()
    ids = [item.get("id") for item in items]
    for cursor, keep_after in ((query_args.after, True), (query_args.before, False)):
        if cursor is not None:
            if cursor not in ids:
                raise ApiError(400, f"No input item with id '{cursor}' in this response.",
                               code="invalid_value", param="after" if keep_after else "before")
            at = ids.index(cursor)
            items, ids = (items[at + 1:], ids[at + 1:]) if keep_after else (items[:at], ids[:at])
    page = items[:query_args.limit]
    return jsonify({"object": "list", "data": page,
                    "first_id": page[0].get("id") if page else None,
                    "last_id": page[-1].get("id") if page else None,
                    "has_more": len(items) > len(page)})
