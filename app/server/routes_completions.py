"""``POST /v1/completions``: raw-prompt completion (autocomplete, fill-in-the-middle)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, jsonify
from quart_schema import document_response, validate_request

from app.providers.base import ChatChunk, ChatModel, TextRequest, Usage
from app.server.direct import direct_model
from app.server.errors import ApiError
from app.server.hardening import admit_request
from app.server.limits import bound_text_request
from app.server.protocol_text import Completion, CompletionRequest, legacy_logprobs
from app.server.sse import event
from app.server.streaming import StreamTotals, sse_response
from app.server.tracking import track_usage

bp = Blueprint("completions", __name__)


def to_text_requests(data: CompletionRequest) -> list[TextRequest]:
    """One provider request per prompt (400 for what is not supported)."""
    if (data.n or 1) > 1 or (data.best_of or 1) > 1:
        raise ApiError(400, "n > 1 and best_of > 1 are not supported: send separate requests.",
                       code="unsupported_value", param="n" if (data.n or 1) > 1 else "best_of")
    if data.echo:
        raise ApiError(400, "echo is not supported: the reply holds only the completion.",
                       code="unsupported_value", param="echo")
    return [TextRequest(
        prompt=p, suffix=data.suffix,
        temperature=1.0 if data.temperature is None else data.temperature,
        top_p=1.0 if data.top_p is None else data.top_p,
        max_tokens=data.max_tokens, stop=data.stop_list, seed=data.seed,
        presence_penalty=data.presence_penalty or 0.0,
        frequency_penalty=data.frequency_penalty or 0.0, logprobs=data.logprobs)
        for p in data.prompts]


class TextReply:
    """Builds ``text_completion`` objects for one request."""

    def __init__(self, model: str) -> None:
        self.id = "cmpl-" + uuid.uuid4().hex
        self.created = int(time.time())
        self.model = model

    def body(self, choices: list[dict[str, Any]], usage: Usage | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "object": "text_completion", "created": self.created,
                               "model": self.model, "choices": choices}
        if usage is not None:
            out["usage"] = usage.to_dict()
        return out


def _choice(index: int, text: str, finish: str | None,
            logprobs: list[dict[str, Any]] | None, offset: int) -> dict[str, Any]:
    return {"text": text, "index": index, "finish_reason": finish,
            "logprobs": legacy_logprobs(logprobs, offset) if logprobs is not None else None}


async def _run(model: ChatModel, request: TextRequest) -> tuple[str, str, Usage, list[dict[str, Any]]]:
    parts, logprobs, finish, usage = [], [], "stop", Usage()
    async for c in model.stream_text(request):
        parts.append(c.text)
        logprobs += c.logprobs or []
        finish = c.finish_reason or finish
        usage = c.usage or usage
    return "".join(parts), finish, usage, logprobs


async def _stream(model: ChatModel, requests: list[TextRequest]) -> AsyncIterator[tuple[int, ChatChunk]]:
    for i, req in enumerate(requests):
        async for c in model.stream_text(req):
            yield (i, c)


async def _text_events(reply: TextReply, items: AsyncIterator[tuple[int, ChatChunk]], totals: StreamTotals,
                       want_logprobs: bool, include_usage: bool) -> AsyncIterator[bytes]:
    """OpenAI ``text_completion`` events, one choice index per prompt, then optional usage."""
    offsets: dict[int, int] = {}
    async for i, c in items:
        if c.text or c.finish_reason or c.logprobs:
            lp = (c.logprobs or []) if want_logprobs else None
            yield event(reply.body([_choice(i, c.text, c.finish_reason, lp, offsets.get(i, 0))]))
            offsets[i] = offsets.get(i, 0) + len(c.text)
        if c.usage:
            totals.usage = totals.usage + c.usage
    if include_usage:
        yield event(reply.body([], totals.usage))


@bp.post("/v1/completions")
@validate_request(CompletionRequest)
@document_response(Completion)
async def completions(data: CompletionRequest) -> Any:
    """OpenAI (legacy) text completions, streamed (SSE) or not; ``suffix`` = fill-in-the-middle."""
    requests = to_text_requests(data)
    target = await direct_model(data.model)
    for req in requests:
        bound_text_request(target.model, req)
    ticket = await admit_request(target.model_id, target.model)
    reply = TextReply(target.model_id)
    want_logprobs = data.logprobs is not None
    if data.stream:
        chunks = ticket.hold(_stream(target.model, requests))  # type: ignore[arg-type]
        include_usage = bool(data.stream_options and data.stream_options.include_usage)
        return await sse_response(chunks, lambda items, totals: _text_events(
            reply, items, totals, want_logprobs, include_usage))
    choices, total = [], Usage()
    async with ticket:
        for i, req in enumerate(requests):
            text, finish, usage, logprobs = await _run(target.model, req)
            choices.append(_choice(i, text, finish, logprobs if want_logprobs else None, 0))
            total = total + usage
    track_usage(total)
    return jsonify(reply.body(choices, total))
