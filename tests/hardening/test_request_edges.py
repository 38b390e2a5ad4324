"""Bad input is a 4xx envelope, never a 500 or an empty/HTML reply (issue 11, defects 5, 7, 8)."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from tests.conftest import LiveServer
from tests.fakes import Script
from tests.hardening.conftest import auth, chat_body


def post(live: LiveServer, body: bytes, path: str = "/chat/completions") -> httpx.Response:
    return httpx.post(live.base_url + path, content=body, timeout=10,
                      headers={**auth(live), "Content-Type": "application/json"})


def raw_http(live: LiveServer, head: bytes, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; (status, headers, body) of the reply."""
    port = int(live.root.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head_part, _, payload = data.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, payload


def envelope(payload: bytes) -> dict:
    err = json.loads(payload)["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    return err


# -- defect 7: strict types, logit_bias -----------------------------------------------------

@pytest.mark.parametrize(("field", "value"), [("temperature", True), ("max_tokens", "10"),
                                              ("stream", "yes"), ("top_p", "0.5"), ("n", "1"),
                                              ("seed", 1.5), ("max_tokens", True)])
def test_values_of_the_wrong_type_are_400(scripted_server: LiveServer, field: str, value: object) -> None:
    r = post(scripted_server, json.dumps(chat_body("hi", **{"max_tokens": 2, field: value})).encode())
    assert r.status_code == 400, r.text
    assert envelope(r.content)["param"] == field


def test_an_integer_is_still_a_fine_float_and_8_0_an_integer(scripted_server: LiveServer) -> None:
    r = post(scripted_server, json.dumps(chat_body("hi", max_tokens=2.0, temperature=1, top_p=1)).encode())
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize("bias", [{"x": 1}, {"-1": 1}, {"5": 101}, {"5": -100.5}, {"5": "1"},
                                  {str(i): 1 for i in range(1025)}])
def test_logit_bias_is_validated(scripted_server: LiveServer, bias: dict) -> None:
    r = post(scripted_server, json.dumps(chat_body("hi", max_tokens=2, logit_bias=bias)).encode())
    assert r.status_code == 400 and envelope(r.content)["param"].startswith("logit_bias"), r.text


def test_logit_bias_is_refused_where_the_runtime_cannot_apply_it(scripted_server: LiveServer) -> None:
    r = post(scripted_server, json.dumps(chat_body("hi", max_tokens=2, logit_bias={"5": 10})).encode())
    assert r.status_code == 400
    err = envelope(r.content)
    assert err["param"] == "logit_bias" and err["code"] == "unsupported"
    empty = post(scripted_server, json.dumps(chat_body("hi", max_tokens=2, logit_bias={})).encode())
    assert empty.status_code == 200  # nothing to apply


# -- defect 5: 500s that were 400s ------------------------------------------------------------

def test_deeply_nested_json_is_400(scripted_server: LiveServer) -> None:
    for depth in (200, 1_000, 100_000):
        body = b'{"messages": ' + b"[" * depth + b"]" * depth + b"}"
        r = post(scripted_server, body)
        assert r.status_code == 400, (depth, r.text)
        assert envelope(r.content)["code"] == "invalid_json"


@pytest.mark.parametrize("body", [
    b'{"messages": [{"role": "user", "content": "\xff"}]}',
    b'{"messages": [{"role": "user", "content": "\xc0\xaf"}]}',  # overlong "/"
    json.dumps(chat_body("hi")).encode("utf-16"),
])
def test_bodies_that_are_not_utf8_are_400_and_logged_safely(scripted_server: LiveServer,
                                                            script: Script, body: bytes,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    r = post(scripted_server, body)
    assert r.status_code == 400, r.text
    assert envelope(r.content)["code"] == "invalid_encoding"
    record = scripted_server.services.request_log.records()[-1]  # type: ignore[attr-defined]
    assert record.status == 400 and "\ufffd" in record.body
    assert "Traceback" not in caplog.text and not script.started


# -- defect 8: HTTP edges -----------------------------------------------------------------------

def test_unsupported_transfer_encoding_gets_an_envelope(scripted_server: LiveServer) -> None:
    status, headers, payload = raw_http(scripted_server, (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n"
        f"Authorization: Bearer {scripted_server.key}\r\nConnection: close\r\n\r\n").encode())
    assert status == 501 and headers["content-type"] == "application/json"
    assert envelope(payload)["code"] == "not_implemented"


@pytest.mark.parametrize("head", [
    b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\rb\r\n\r\n",   # CR inside a header
    b"POST /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"GET /v1/models\r\n\r\n",                                            # HTTP/0.9
    b"GET /v1/models HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",             # two Host headers
    b"GET /v1/models HTTP/1.1\r\nBad Header: x\r\n\r\n",
    b"G\x00T /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
])
def test_malformed_requests_are_400_with_a_body(scripted_server: LiveServer, head: bytes) -> None:
    status, headers, payload = raw_http(scripted_server, head)
    assert status == 400 and headers["content-type"] == "application/json"
    assert envelope(payload)["code"] == "malformed_request"


def test_doubled_slashes_are_a_404_envelope_not_a_redirect(scripted_server: LiveServer) -> None:
    r = httpx.get(scripted_server.root + "//v1//models", headers=auth(scripted_server), timeout=10)
    assert r.status_code == 404 and envelope(r.content)["code"] == "unknown_url"


@pytest.mark.parametrize("extra", [
    [("X-Big", "a" * 100_000)],
    [(f"X-B{i}", "a" * 1000) for i in range(70)],
])
def test_a_request_head_over_64kb_is_refused(scripted_server: LiveServer, extra: list) -> None:
    head = "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in extra)
    status, _, payload = raw_http(scripted_server, (head + "Connection: close\r\n\r\n").encode())
    assert status == 431 and envelope(payload)["code"] == "request_header_too_large"


def test_trace_is_405_with_allow(scripted_server: LiveServer) -> None:
    r = httpx.request("TRACE", scripted_server.base_url + "/models", headers=auth(scripted_server),
                      timeout=10)
    assert r.status_code == 405 and envelope(r.content)["code"] == "method_not_allowed"
    assert set(r.headers["allow"].replace(" ", "").split(",")) >= {"GET", "OPTIONS"}


def test_llama_cpp_applies_logit_bias(llama_server: LiveServer) -> None:
    model = llama_server.services.hub.load(llama_server.settings.current.active_model).result()  # type: ignore[attr-defined]
    plain = llama_server.client().chat.completions.create(
        model="tater/direct", messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0)
    tokens = model.llm.tokenize(plain.choices[0].message.content.encode(), add_bos=False, special=False)
    first = tokens[0]
    other = next(t for t in tokens if t != first)  # a token the model can produce (some are banned)
    piece = model.llm.detokenize([other]).decode()
    r = llama_server.client().chat.completions.create(
        model="tater/direct", messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0,
        logit_bias={str(other): 100})
    assert r.choices[0].message.content == piece * 4
    banned = llama_server.client().chat.completions.create(
        model="tater/direct", messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0,
        logit_bias={str(other): -100})
    assert banned.choices[0].message.content != plain.choices[0].message.content  # it was in there
    too_big = post(llama_server, json.dumps(chat_body("hi", max_tokens=2,
                                                      logit_bias={"999999999": 1})).encode())
    assert too_big.status_code == 400 and envelope(too_big.content)["param"] == "logit_bias"
