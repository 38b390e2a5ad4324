"""The Messages API's wire details on the real server (llama.cpp): auth headers, the error shape on
every gate, the named SSE event sequence, ``HEAD /``, the OpenAPI document."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, start_live_server

BODY = {"model": "tater/base", "max_tokens": 6, "temperature": 0,
        "messages": [{"role": "user", "content": "Say something."}]}
CLAUDE_HEADERS = {"anthropic-version": "2023-06-01",
                  "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"}


def post(live: LiveServer, path: str, body: object, **headers: str) -> httpx.Response:
    return httpx.post(live.root + path, json=body, headers=headers, timeout=60)


def assert_anthropic_error(resp: httpx.Response, status: int, kind: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"type", "error"} and body["type"] == "error"
    assert set(body["error"]) == {"type", "message"} and body["error"]["type"] == kind
    assert body["error"]["message"]
    return body


def test_both_auth_headers_beta_query_and_head_root(llama_server: LiveServer) -> None:
    live = llama_server
    for auth in ({"x-api-key": live.key}, {"Authorization": f"Bearer {live.key}"}):
        resp = post(live, "/v1/messages?beta=true", BODY, **auth, **CLAUDE_HEADERS)
        assert resp.status_code == 200, resp.text
        assert resp.json()["type"] == "message"
    assert httpx.head(live.root + "/", timeout=10).status_code == 200
    assert httpx.get(live.root + "/", timeout=10).status_code == 200


def test_every_gate_answers_in_anthropics_shape(llama_server: LiveServer) -> None:
    live = llama_server
    assert_anthropic_error(post(live, "/v1/messages", BODY), 401, "authentication_error")
    assert_anthropic_error(post(live, "/v1/messages/count_tokens", BODY, **{"x-api-key": "nope"}),
                           401, "authentication_error")
    key = {"x-api-key": live.key}
    missing = assert_anthropic_error(post(live, "/v1/messages", {**BODY, "max_tokens": None},
                                          **key), 400, "invalid_request_error")
    assert "max_tokens" in missing["error"]["message"]
    no_max = {k: v for k, v in BODY.items() if k != "max_tokens"}
    assert "max_tokens" in assert_anthropic_error(post(live, "/v1/messages", no_max, **key), 400,
                                                  "invalid_request_error")["error"]["message"]
    bad_json = httpx.post(live.root + "/v1/messages", content=b"{nope", timeout=10,
                          headers={**key, "Content-Type": "application/json"})
    assert_anthropic_error(bad_json, 400, "invalid_request_error")
    assert_anthropic_error(post(live, "/v1/messages", {**BODY, "model": "gpt-nothing"}, **key), 404,
                           "not_found_error")
    # The same failure on the chat route keeps OpenAI's envelope: the shape follows the route.
    chat = httpx.post(live.base_url + "/chat/completions", json={"model": "gpt-nothing", "messages": [
        {"role": "user", "content": "hi"}]}, headers=key, timeout=10)
    assert chat.status_code == 404 and chat.json()["error"]["code"] == "model_not_found"

    live.settings.update(api_enabled=False)
    assert_anthropic_error(post(live, "/v1/messages", BODY, **key), 404, "not_found_error")
    live.settings.update(api_enabled=True)
    live.services.keys.clear()  # type: ignore[attr-defined]
    assert_anthropic_error(post(live, "/v1/messages", BODY, **key), 403, "permission_error")


def test_failed_keys_are_throttled_in_anthropics_shape(clean_env: Path, tiny_gguf: Path) -> None:
    from app.providers.llama_cpp import LlamaCppProvider

    row = LlamaCppProvider.row_for(str(tiny_gguf))
    live = start_live_server(clean_env, [row], row.id)
    try:
        limits = live.settings.current.limits.model_copy(update={"auth_failures_per_minute": 1})
        live.settings.update(limits=limits)
        statuses = []
        for i in range(4):
            resp = post(live, "/v1/messages", BODY, **{"x-api-key": f"wrong-{i}"})
            statuses.append(resp.status_code)
        assert statuses[0] == 401 and statuses[-1] == 429
        assert_anthropic_error(resp, 429, "rate_limit_error")
    finally:
        live.services.shutdown()  # type: ignore[attr-defined]


def sse_events(text: str) -> list[tuple[str, dict]]:
    """``(event name, data)`` pairs of an SSE body (every event must be named)."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n") if not line.startswith(":"))
        if lines:  # (a block of comment lines only: Hydra's progress notes)
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_stream_is_anthropics_event_sequence(llama_server: LiveServer) -> None:
    live = llama_server
    key = {"x-api-key": live.key}
    whole = post(live, "/v1/messages", BODY, **key).json()
    resp = post(live, "/v1/messages", {**BODY, "stream": True}, **key)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in resp.text
    events = sse_events(resp.text)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert all(name == data["type"] for name, data in events)
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_") and start["content"] == [] and start["stop_reason"] is None
    # message_start counts the whole prompt (the cache is known only once it runs)
    assert start["usage"]["input_tokens"] == (whole["usage"]["input_tokens"]
                                              + whole["usage"]["cache_read_input_tokens"])
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == whole["content"][0]["text"]
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 6 == whole["usage"]["output_tokens"]


def test_request_log_and_openapi(llama_server: LiveServer) -> None:
    live = llama_server
    post(live, "/v1/messages", BODY, **{"x-api-key": live.key})
    rec = [r for r in live.services.request_log.records() if r.path == "/v1/messages"][-1]  # type: ignore[attr-defined]
    assert rec.status == 200 and rec.model == live.settings.current.active_model
    assert rec.completion_tokens == 6 and rec.prompt_tokens > 0
    doc = httpx.get(live.root + "/openapi.json", timeout=10).json()
    assert "/v1/messages" in doc["paths"] and "/v1/messages/count_tokens" in doc["paths"]
    assert "MessagesRequest" in json.dumps(doc["paths"]["/v1/messages"])


@pytest.mark.parametrize("tools", [None, [{"name": "f", "input_schema": {"type": "object"}}]])
def test_count_tokens_needs_no_max_tokens(llama_server: LiveServer, tools: list | None) -> None:
    body = {"model": "claude-sonnet-4-5", "messages": BODY["messages"]}
    if tools:
        body["tools"] = tools
    resp = post(llama_server, "/v1/messages/count_tokens", body, **{"x-api-key": llama_server.key})
    assert resp.status_code == 200, resp.text
    assert resp.json()["input_tokens"] > 0


def test_hydra_mode_through_messages(llama_server: LiveServer) -> None:
    """``tater/hydra`` runs a Hydra turn; the reply names the model that ran (as Direct replies do)
    and carries the step report."""
    key = {"x-api-key": llama_server.key}
    whole = post(llama_server, "/v1/messages", {**BODY, "model": "tater/hydra"}, **key)
    assert whole.status_code == 200, whole.text
    body = whole.json()
    assert body["model"].startswith("llama_cpp::") and body["content"][0]["type"] == "text"
    assert "tater" in body
    streamed = post(llama_server, "/v1/messages", {**BODY, "model": "tater/hydra", "stream": True}, **key)
    names = [name for name, _ in sse_events(streamed.text)]
    assert names[0] == "message_start" and names[-1] == "message_stop"


def test_openapi_documents_anthropic_errors_and_events(llama_server: LiveServer) -> None:
    doc = httpx.get(llama_server.root + "/openapi.json", timeout=10).json()
    post_op = doc["paths"]["/v1/messages"]["post"]
    assert post_op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/AnthropicError")
    assert "event" in post_op["responses"]["200"]["content"]["text/event-stream"]["schema"]["required"]
    chat = doc["paths"]["/v1/chat/completions"]["post"]["responses"]["default"]
    assert chat["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert "AnthropicError" in doc["components"]["schemas"]


def test_a_prompt_over_the_context_reads_as_anthropic_words_it(llama_server: LiveServer) -> None:
    """``prompt is too long: N tokens > M maximum`` is what Claude Code compacts on."""
    long = {**BODY, "messages": [{"role": "user", "content": "the cat sat on the mat " * 400}]}
    err = assert_anthropic_error(post(llama_server, "/v1/messages", long, **{"x-api-key": llama_server.key}),
                                 400, "invalid_request_error")
    assert err["error"]["message"].startswith("prompt is too long: ")
    assert " tokens > 512 maximum. " in err["error"]["message"]
