"""The remote provider passes an upstream's reasoning through, whichever name it uses."""

from __future__ import annotations

import json

import httpx
import pytest

from app.providers.base import ChatMessage, ChatRequest
from app.providers.remote import RemoteChatModel


def _sse(*events: object) -> bytes:
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_upstream_reasoning_passes_through(field: str) -> None:
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, content=_sse(
            {"choices": [{"index": 0, "delta": {"role": "assistant", field: "Think"}}]},
            {"choices": [{"index": 0, "delta": {field: "ing."}}]},
            {"choices": [{"index": 0, "delta": {"content": "Answer."}, "finish_reason": "stop"}]}),
            headers={"content-type": "text/event-stream"})

    model = RemoteChatModel("remote::t::m", base_url="http://upstream.test/v1", upstream_model="m",
                            transport=httpx.MockTransport(handler))  # type: ignore[arg-type]
    request = ChatRequest([ChatMessage("user", "hi")], reasoning_effort="low")
    chunks = [c async for c in model.stream(request)]
    assert [c.reasoning for c in chunks if c.reasoning] == ["Think", "ing."]
    result = await model.complete(request)
    assert (result.reasoning, result.text) == ("Thinking.", "Answer.")
    assert bodies[0]["reasoning_effort"] == "low"
    await model.aclose()
