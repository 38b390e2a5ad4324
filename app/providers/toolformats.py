"""Tool calls written in the model's text, turned into OpenAI tool-call deltas while streaming.

:func:`parse_tool_chunks` is the stage every local runtime runs its (reasoning-split) chunks
through when a request has tools: answer text goes through
:class:`~app.providers.toolcalls.ToolCallParser`, reasoning passes untouched (a call written
while thinking is not a call), and a reply that made calls finishes with ``tool_calls``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from app.providers.base import ChatChunk
from app.providers.toolcalls import ToolCallParser


def parse_tool_chunks(chunks: Iterable[ChatChunk], parser: ToolCallParser) -> Iterator[ChatChunk]:
    """``chunks`` with the calls in their text turned into tool-call deltas."""
    for chunk in chunks:
        text, calls = parser.feed(chunk.text) if chunk.text else ("", [])
        calls = (chunk.tool_calls or []) + calls
        if chunk.finish_reason:
            rest, more = parser.finish()
            text, calls = text + rest, calls + more
            finish = "tool_calls" if calls_made(parser, chunk) else chunk.finish_reason
            yield ChatChunk(text=text, reasoning=chunk.reasoning, tool_calls=calls or None,
                            finish_reason=finish, usage=chunk.usage, logprobs=chunk.logprobs)
        elif text or calls or chunk.reasoning or chunk.logprobs:
            yield ChatChunk(text=text, reasoning=chunk.reasoning, tool_calls=calls or None,
                            logprobs=chunk.logprobs)


def calls_made(parser: ToolCallParser, last: ChatChunk) -> bool:
    """Whether a reply that ended with ``last`` finishes as ``tool_calls``."""
    return last.finish_reason in ("stop", "tool_calls") and (
        parser.calls > 0 or last.finish_reason == "tool_calls")
