"""Request limits: body size (live), message count and length, and the model's context window.

- Body: ``limits.max_body_bytes`` is read when each request is created (a ``request_class``
  override), so a settings change applies to the next request.  Larger bodies → 413, whether
  announced by ``Content-Length`` or streamed chunked.  A JSON body must be UTF-8 and nest
  at most :data:`MAX_JSON_DEPTH` levels deep → else 400 (never a 500 from the decoder).
- Head: a request line and headers over :data:`MAX_HEAD_BYTES` together → 431 (h11's own
  limit only applies to a head that arrives in pieces).
- Messages: more than ``limits.max_messages`` → 400; any message whose text exceeds
  ``limits.max_content_chars`` characters → 400 naming it.
- Context: a chat prompt of ``n`` tokens needs ``n < context_length`` → else 400 with both
  numbers.  ``max_tokens`` beyond what is left of the context is **clamped** to the room left (like
  llama.cpp itself and most local servers; the reply then ends with ``finish_reason:
  "length"``).  Clients routinely send large fixed ``max_tokens`` values that were meant for
  other models; refusing them would break those clients for no benefit.  A raw completion's
  ``max_tokens`` is clamped to the whole context (its runtime ends at the context's end).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from quart import Quart, request

from app.providers.base import ChatModel, ChatRequest, ProviderError, TextRequest
from app.server.context import ServerContext
from app.server.errors import ApiError
from app.server.messages import content_text
from app.server.protocol import ChatCompletionRequest
from app.settings import LimitSettings

INLINE_COUNT_CHARS = 8192
"""Prompts up to this many characters are counted on the event loop."""


MAX_JSON_DEPTH = 128
"""Deepest nesting of arrays/objects accepted in a JSON body (real requests need about 20)."""

MAX_HEAD_BYTES = 64 * 1024
"""Largest request head (request line and headers), as Hypercorn is configured (runner.py)."""


def install_live_body_limit(app: Quart, ctx: ServerContext) -> None:
    """Every request gets the body limit that is current when it arrives, and a strict JSON reader."""
    base = app.request_class

    class LiveLimitRequest(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["max_content_length"] = ctx.settings.current.limits.max_body_bytes
            super().__init__(*args, **kwargs)

        async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
            if cache and self._cached_json[silent] is not Ellipsis:
                return self._cached_json[silent]
            if not (force or self.is_json):
                return None
            result = parse_json_body(await self.get_data(cache=cache))
            if cache:
                self._cached_json[silent] = result
            return result

    app.request_class = LiveLimitRequest

    @app.before_request
    async def _head_size() -> None:
        scope = request.scope
        size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + sum(
            len(k) + len(v) + 4 for k, v in scope.get("headers", ()))
        if size > MAX_HEAD_BYTES:
            raise ApiError(431, f"The request head is {size} bytes long; the limit is {MAX_HEAD_BYTES}.",
                           code="request_header_too_large")


def parse_json_body(raw: bytes) -> Any:
    """A request body as JSON: 400 (never a 500) for bytes that are not UTF-8, bad JSON or
    nesting deeper than :data:`MAX_JSON_DEPTH`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"The request body is not valid UTF-8 (byte {exc.start}): JSON bodies "
                       "must be UTF-8.", code="invalid_encoding") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise nested_too_deeply() from None
    except ValueError:
        raise ApiError(400, "The request body is not valid JSON.", code="invalid_json") from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise nested_too_deeply()
    return data


def nested_too_deeply() -> ApiError:
    return ApiError(400, f"The request body nests arrays/objects more than {MAX_JSON_DEPTH} levels "
                    "deep.", code="invalid_json")


def json_depth(value: Any) -> int:
    """How deeply arrays/objects nest in ``value`` (walked without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            return depth
        stack.extend((child, depth + 1) for child in children)
    return deepest


def check_message_limits(data: ChatCompletionRequest, limits: LimitSettings) -> None:
    """400 when there are too many messages or one is too long."""
    check_text_limits([content_text(m.content) for m in data.messages], limits)


def check_text_limits(texts: list[str], limits: LimitSettings) -> None:
    """400 when there are too many messages or one's text is too long (any protocol)."""
    if len(texts) > limits.max_messages:
        raise ApiError(400, f"Too many messages: {len(texts)} (the limit is {limits.max_messages}).",
                       code="too_many_messages", param="messages")
    for i, text in enumerate(texts):
        n = len(text)
        if n > limits.max_content_chars:
            raise ApiError(400, f"Message {i} is {n} characters long (the limit is "
                           f"{limits.max_content_chars}).", code="content_too_long",
                           param=f"messages[{i}].content")


async def fit_to_context(model: ChatModel, request: ChatRequest) -> int | None:
    """Reject prompts that do not fit the model's context (or ask what it cannot do, such as
    ``logit_bias``); clamp ``max_tokens`` to the room left.

    Long prompts are tokenized on a worker thread (they would stall the event loop).  Returns the
    prompt length in tokens when the runtime can count it cheaply, else None (then the runtime
    itself is the judge).
    """
    if request.logit_bias and not model.supports_logit_bias:
        raise ApiError(400, f"logit_bias is not supported by the {model.provider or 'selected'} runtime "
                       "of this model (llama.cpp and remote models support it).",
                       code="unsupported", param="logit_bias")
    limit = model.context_length
    if not limit:
        return None
    chars = sum(len(m.content) for m in request.messages)
    try:
        if chars <= INLINE_COUNT_CHARS:  # ~50 us: cheaper than a thread hop (~0.6 ms)
            prompt = model.count_tokens(request.messages, request.tools)
        else:
            prompt = await asyncio.to_thread(model.count_tokens, request.messages, request.tools)
    except ProviderError:
        raise
    except Exception:  # counting is a courtesy: the runtime still enforces its own window
        return None
    if prompt is None:
        return None
    if prompt >= limit:
        raise ApiError(400, f"The prompt is {prompt} tokens long, but this model's context window is "
                       f"{limit} tokens (at least one token must be left for the reply). Shorten the "
                       "conversation or use a model with a larger context.",
                       code="context_length_exceeded", param="messages")
    room = limit - prompt
    if request.max_tokens is not None and request.max_tokens > room:
        request.max_tokens = room
    return prompt


def bound_text_request(model: ChatModel, request: TextRequest) -> None:
    """A raw completion's ``max_tokens`` (None: until the end) at most the model's context: its
    prompt is not counted here (the runtimes tokenize raw text themselves and end at their
    context), but no request may ask a model for more tokens than its whole window."""
    limit = model.context_length
    if limit and (request.max_tokens is None or request.max_tokens > limit):
        request.max_tokens = limit
