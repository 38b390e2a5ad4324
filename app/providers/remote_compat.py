"""Remote rows: pass-through helpers for tools, structured output, completions and embeddings.

Requests are passed through as sent, with two adjustments that keep OpenAI semantics on
upstreams that implement less of them (llama-cpp-python's server, older Ollama builds):

- ``tool_choice: "required"`` with exactly one tool is sent as that named function (the
  same meaning; servers that ignore ``required`` do honour a named function);
- an upstream that rejects OpenAI's ``json_schema`` response format is asked again with
  llama.cpp's ``{"type": "json_object", "schema": ...}``, which such servers enforce.

Streamed tool-call fragments are normalised to OpenAI's shape by
:func:`app.providers.toolcalls.first_fragments` (id and name on a call's first fragment only).
``/completions`` and ``/embeddings`` are forwarded to the upstream's own endpoints.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from app.providers.base import ChatChunk, ChatRequest, TextRequest, Usage
from app.providers.logprobs import logprob_entries
from app.providers.upstream import UpstreamClient, UpstreamError


def adapt_body(body: dict[str, Any], request: ChatRequest, *, schema_compat: bool) -> dict[str, Any]:
    """The chat body with the adjustments above applied."""
    tools = request.tools or []
    if request.tool_choice == "required" and len(tools) == 1:
        body["tool_choice"] = {"type": "function",
                               "function": {"name": tools[0]["function"]["name"]}}
    fmt = request.response_format or {}
    if schema_compat and fmt.get("type") == "json_schema":
        body["response_format"] = {"type": "json_object",
                                   "schema": (fmt.get("json_schema") or {}).get("schema")}
    return body


def rejects_json_schema(request: ChatRequest, status: int, text: str) -> bool:
    """True when the upstream refused the request because of the json_schema format."""
    fmt = request.response_format or {}
    return fmt.get("type") == "json_schema" and status in (400, 422, 500) and "json_schema" in text


def text_body(upstream_model: str, request: TextRequest) -> dict[str, Any]:
    """The upstream ``/completions`` body."""
    body: dict[str, Any] = {"model": upstream_model, "prompt": request.prompt,
                            "stream": True, "temperature": request.temperature,
                            "top_p": request.top_p}
    optional = {"suffix": request.suffix, "max_tokens": request.max_tokens,
                "seed": request.seed, "logprobs": request.logprobs,
                "stop": list(request.stop) or None,
                "presence_penalty": request.presence_penalty or None,
                "frequency_penalty": request.frequency_penalty or None}
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


async def stream_text(upstream: UpstreamClient, request: TextRequest) -> AsyncIterator[ChatChunk]:
    """Forward a completion upstream, streamed; chunks as :meth:`ChatModel.stream_text` yields."""
    resp = await upstream.post("/completions", text_body(upstream.upstream_model, request))
    finish, usage = None, None
    try:
        async for line in resp.aiter_lines():
            data = line[5:].strip() if line.startswith("data:") else ""
            if not data or data == "[DONE]":
                continue
            try:
                event = json.loads(data)
            except ValueError:
                raise UpstreamError(f"{upstream.url('/completions')} sent a malformed event: "
                                    f"{data[:200]!r}") from None
            if event.get("error"):
                raise UpstreamError(f"the upstream completion failed: {event['error']}")
            if event.get("usage"):
                u = event["usage"]
                usage = Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))
            for choice in event.get("choices") or []:
                entries = logprob_entries(choice.get("logprobs"))
                if choice.get("text") or entries:
                    yield ChatChunk(text=choice.get("text") or "", logprobs=entries)
                finish = choice.get("finish_reason") or finish
    finally:
        await resp.aclose()
    yield ChatChunk(finish_reason=finish or "stop", usage=usage or Usage())


async def embed(upstream: UpstreamClient, texts: list[str | list[int]]) -> tuple[list[list[float]], int]:
    """Forward an embeddings request upstream (floats)."""
    resp = await upstream.post("/embeddings", {"model": upstream.upstream_model, "input": texts,
                                               "encoding_format": "float"})
    try:
        payload = json.loads(await resp.aread())
        items = sorted(payload["data"], key=lambda d: d.get("index", 0))
        vectors = [[float(x) for x in d["embedding"]] for d in items]
    except (ValueError, KeyError, TypeError) as exc:
        raise UpstreamError(f"{upstream.url('/embeddings')} sent an unexpected reply: {exc}") from exc
    finally:
        await resp.aclose()
    if len(vectors) != len(texts):
        raise UpstreamError(f"{upstream.url('/embeddings')} returned {len(vectors)} vectors for "
                            f"{len(texts)} inputs")
    return vectors, int((payload.get("usage") or {}).get("prompt_tokens") or 0)
