"""Runtime failures on the Messages routes: before the first byte a plain error response, after it
an ``error`` event (Anthropic's shape both times), on the real server with a scripted runtime."""

from __future__ import annotations

import httpx

from tests.conftest import LiveServer
from tests.hardening.conftest import scripted_server  # noqa: F401 - fixture
from tests.messages.test_messages_protocol import assert_anthropic_error, sse_events


def ask(live: LiveServer, prompt: str, **kw: object) -> httpx.Response:
    body = {"model": "tater/base", "max_tokens": 5, "messages": [{"role": "user", "content": prompt}], **kw}
    return httpx.post(live.root + "/v1/messages", json=body, headers={"x-api-key": live.key}, timeout=30)


def test_failure_before_the_stream_is_an_error_response(scripted_server: LiveServer) -> None:  # noqa: F811
    assert_anthropic_error(ask(scripted_server, "boom"), 500, "api_error")
    assert_anthropic_error(ask(scripted_server, "boom", stream=True), 500, "api_error")


def test_failure_mid_stream_is_an_error_event(scripted_server: LiveServer) -> None:  # noqa: F811
    resp = ask(scripted_server, "boom-later", stream=True)
    assert resp.status_code == 200
    events = sse_events(resp.text)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-1] == "error" and "message_stop" not in names
    error = events[-1][1]
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert "scripted failure" in error["error"]["message"]
    rec = [r for r in scripted_server.services.request_log.records() if r.stream][-1]  # type: ignore[attr-defined]
    assert rec.path == "/v1/messages" and rec.status == 500
