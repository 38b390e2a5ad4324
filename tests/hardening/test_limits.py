"""Body, message and content limits (live settings) and the server's timeouts, over real sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from app.server.app import create_app
from app.server.runner import ApiServer, ServerTimeouts
from tests.conftest import LiveServer
from tests.fakes import Script
from tests.hardening.conftest import auth, chat_body


def post(live: LiveServer, body: object = None, **kw: object) -> httpx.Response:
    return httpx.post(live.base_url + "/chat/completions", json=body, headers=auth(live), timeout=10,
                      **kw)  # type: ignore[arg-type]


def test_body_limit_is_413_and_follows_settings_live(scripted_server: LiveServer) -> None:
    big = chat_body("word " * 3000, max_tokens=1)  # ~15 kB
    assert post(scripted_server, big).status_code == 400  # over the scripted 64-token context
    scripted_server.settings.update(limits={"max_body_bytes": 4096})
    r = post(scripted_server, big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit still holds
        import json

        data = json.dumps(big).encode()
        for i in range(0, len(data), 1000):
            yield data[i:i + 1000]

    r = httpx.post(scripted_server.base_url + "/chat/completions", content=chunked(),
                   headers={**auth(scripted_server), "Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 413
    assert post(scripted_server, chat_body("small", max_tokens=1)).status_code == 200


def test_too_many_messages_and_too_long_content_are_400(scripted_server: LiveServer) -> None:
    scripted_server.settings.update(limits={"max_messages": 3, "max_content_chars": 20})
    many = {"messages": [{"role": "user", "content": "hi"}] * 4, "max_tokens": 1}
    r = post(scripted_server, many)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "too_many_messages" and "4" in r.json()["error"]["message"]
    long = {"messages": [{"role": "system", "content": "ok"},
                         {"role": "user", "content": [{"type": "text", "text": "x" * 21}]}], "max_tokens": 1}
    err = post(scripted_server, long).json()["error"]
    assert err["code"] == "content_too_long" and err["param"] == "messages[1].content"
    assert "21 characters" in err["message"]
    assert post(scripted_server, chat_body("x" * 20, max_tokens=1)).status_code == 200


def test_prompt_over_the_context_is_400_and_max_tokens_is_clamped(scripted_server: LiveServer,
                                                                   script: Script) -> None:
    script.delay = 0.0
    err = post(scripted_server, chat_body("w " * 70, max_tokens=1)).json()["error"]
    assert err["code"] == "context_length_exceeded"
    assert "The prompt is 71 tokens long" in err["message"] and "64 tokens" in err["message"]
    r = post(scripted_server, chat_body("a b c", max_tokens=1000)).json()  # prompt = 4 "tokens"
    assert r["usage"]["completion_tokens"] == 60 and r["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("max_tokens", [10**9, None])
def test_a_raw_completion_never_asks_for_more_than_the_context(scripted_server: LiveServer,
                                                              script: Script, max_tokens: int | None) -> None:
    """A runtime that would go on (as the schemathesis suite found: the model held for minutes,
    every later request waiting) is stopped at the model's window."""
    script.delay = 0.0
    r = httpx.post(scripted_server.base_url + "/completions", headers=auth(scripted_server),
                   json={"prompt": "x", "max_tokens": max_tokens}, timeout=30).json()
    assert r["usage"]["completion_tokens"] == 64 and r["choices"][0]["finish_reason"] == "length"


@pytest.fixture
def quick_server(scripted_server: LiveServer) -> Iterator[LiveServer]:
    """A second listener on the same services with short timeouts (1 s head, 1 s body)."""
    ctx = scripted_server.services.context  # type: ignore[attr-defined]
    server = ApiServer(lambda: create_app(ctx), timeouts=ServerTimeouts(head_seconds=1.0, body_seconds=1.0))
    server.start("127.0.0.1", 0)
    yield LiveServer(scripted_server.services, server.base_url, scripted_server.key)
    server.stop()


def _read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    t0 = time.perf_counter()
    sock.settimeout(limit)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data, time.perf_counter() - t0
        data += chunk


def test_a_client_that_stalls_mid_head_is_dropped(quick_server: LiveServer) -> None:
    port = int(quick_server.root.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        data, waited = _read_until_closed(s, 5)
    assert 0.8 < waited < 3, f"dropped after {waited:.2f}s"
    assert data == b""


def test_a_client_that_stalls_mid_body_gets_408(quick_server: LiveServer) -> None:
    port = int(quick_server.root.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Authorization: Bearer " + quick_server.key.encode() + b"\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"messages\": [")
        data, waited = _read_until_closed(s, 5)
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert waited < 3


def test_a_quiet_client_waiting_for_a_long_reply_is_not_cut_off(quick_server: LiveServer,
                                                                script: Script) -> None:
    script.delay = 0.1  # a 2.5 s non-streamed generation: longer than every timeout above
    t0 = time.perf_counter()
    r = post(quick_server, chat_body("slow", max_tokens=25))
    assert r.status_code == 200 and time.perf_counter() - t0 > 2
    assert r.json()["usage"]["completion_tokens"] == 25


def test_an_oversized_request_head_is_refused(scripted_server: LiveServer) -> None:
    r = httpx.get(scripted_server.base_url + "/models", timeout=10,
                  headers={**auth(scripted_server), "X-Filler": "a" * (200 * 1024)})
    assert r.status_code in (400, 431)
