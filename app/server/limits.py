"""Request limits: body size (live), message count and length, and the model's context window.

- Body: ``limits.max_body_bytes`` is read when each request is created (a ``request_class``
  override), so a settings change applies to the next request.  Larger bodies → 413, whether
  announced by ``Content-Length`` or streamed chunked.
- Messages: more than ``limits.max_messages`` → 400; any message whose text exceeds
  ``limits.max_content_chars`` characters → 400 naming it.
- Context: a prompt of ``n`` tokens needs ``n < context_length`` → else 400 with both numbers.
  ``max_tokens`` beyond what is left of the context is **clamped** to the room left (like
  llama.cpp itself and most local servers; the reply then ends with ``finish_reason:
  "length"``).  Clients routinely send large fixed ``max_tokens`` values that were meant for
  other models; refusing them would break those clients for no benefit.
"""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Quart

from app.providers.base import ChatModel, ChatRequest, ProviderError
from app.server.context import ServerContext
from app.server.errors import ApiError
from app.server.messages import content_text
from app.server.protocol import ChatCompletionRequest
from app.settings import LimitSettings

INLINE_COUNT_CHARS = 8192
"""Prompts up to this many characters are counted on the event loop."""


def install_live_body_limit(app: Quart, ctx: ServerContext) -> None:
    """Every request gets the body limit that is current when it arrives."""
    base = app.request_class

    class LiveLimitRequest(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["max_content_length"] = ctx.settings.current.limits.max_body_bytes
            super().__init__(*args, **kwargs)

    app.request_class = LiveLimitRequest


def body_too_large(limit: int) -> ApiError:
    return ApiError(413, f"The request body is larger than the limit of {limit} bytes (Settings ▸ Server "
                    "▸ Limits).", code="request_too_large")


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
    """Reject prompts that do not fit the model's context; clamp ``max_tokens`` to the room left.

    Long prompts are tokenized on a worker thread (they would stall the event loop).  Returns the
    prompt length in tokens when the runtime can count it cheaply, else None (then the runtime
    itself is the judge).
    """
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
