"""Every error status, over raw HTTP, in OpenAI's envelope (auth runs before validation)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.settings import ModelRow
from tests.conftest import LiveServer, start_live_server


@pytest.fixture
def bare_server(clean_env: Path) -> Iterator[LiveServer]:
    """A real server whose only row points at a file that does not exist (never loaded here)."""
    row = ModelRow(id="llama_cpp::x::missing.gguf", provider="llama_cpp", source="/nonexistent/missing.gguf")
    live = start_live_server(clean_env, [row], None)
    yield live
    live.services.shutdown()


def envelope(resp: httpx.Response) -> dict:
    body = resp.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["code"], str) and err["message"]
    return err


def test_disabled_is_404_everywhere(bare_server: LiveServer) -> None:
    bare_server.settings.update(api_enabled=False)
    for path in ("/v1/models", "/v1/chat/completions", "/openapi.json"):
        r = httpx.request(
            "GET" if "models" in path or "openapi" in path else "POST",
            bare_server.root + path,
            headers={"Authorization": f"Bearer {bare_server.key}"},
        )
        assert r.status_code == 404
        assert envelope(r)["code"] == "api_disabled"


def test_no_key_configured_is_403(bare_server: LiveServer) -> None:
    bare_server.services.keys.clear()
    r = httpx.get(bare_server.base_url + "/models", headers={"Authorization": "Bearer whatever-key-here"})
    assert r.status_code == 403
    err = envelope(r)
    assert err["code"] == "no_key_configured" and "No API key is configured" in err["message"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}, {"Authorization": "Basic Zm9vOmJhcg=="}],
)
def test_missing_or_wrong_key_is_401_with_challenge(bare_server: LiveServer, headers: dict) -> None:
    r = httpx.get(bare_server.base_url + "/models", headers=headers)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert envelope(r)["code"] == "invalid_api_key"


def test_auth_runs_before_body_validation(bare_server: LiveServer) -> None:
    r = httpx.post(bare_server.base_url + "/chat/completions", content=b"{broken")
    assert r.status_code == 401


def test_each_key_style_is_accepted(bare_server: LiveServer) -> None:
    k = bare_server.key
    for kwargs in (
        {"headers": {"Authorization": f"Bearer {k}"}},
        {"headers": {"X-API-Key": k}},
        {"params": {"api_key": k}},
    ):
        r = httpx.get(bare_server.base_url + "/models", **kwargs)
        assert r.status_code == 200, kwargs


def test_a_slow_keyring_never_stalls_requests(bare_server: LiveServer, memory_keyring,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The key is re-read off the event loop: a keyring taking 1 s per read delays nobody."""
    import time

    real_get = memory_keyring.get_password

    def slow_get(service: str, username: str) -> str | None:
        time.sleep(1.0)
        return real_get(service, username)

    monkeypatch.setattr(memory_keyring, "get_password", slow_get)
    keys = bare_server.services.keys  # type: ignore[attr-defined]
    with httpx.Client(base_url=bare_server.base_url, headers={"X-API-Key": bare_server.key}) as c:
        for _ in range(3):
            time.sleep(keys._refresh + 0.1)  # the cached key is stale: a re-read is due
            t0 = time.perf_counter()
            assert c.get("/models").status_code == 200
            assert time.perf_counter() - t0 < 0.5


def test_models_list_shows_aliases_then_rows(bare_server: LiveServer) -> None:
    r = httpx.get(bare_server.base_url + "/models", headers={"X-API-Key": bare_server.key})
    data = r.json()
    assert data["object"] == "list"
    ids = [m["id"] for m in data["data"]]
    assert ids == ["tater/base", "tater/direct", "tater/hydra", "llama_cpp::x::missing.gguf"]
    assert data["data"][3]["owned_by"] == "llama_cpp" and data["data"][0]["owned_by"] == "tater"


def post(live: LiveServer, body: object = None, content: bytes | None = None) -> httpx.Response:
    kw = {"content": content} if content is not None else {"json": body}
    return httpx.post(live.base_url + "/chat/completions", headers={"X-API-Key": live.key}, timeout=30, **kw)


HELLO = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "messages"),
        ({}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": HELLO, "temperature": 3}, "temperature"),
        ({"messages": HELLO, "temperature": "hot"}, "temperature"),
        ({"messages": HELLO, "top_p": 1.5}, "top_p"),
        ({"messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"messages": HELLO, "max_tokens": "ten"}, "max_tokens"),
        ({"messages": HELLO, "max_completion_tokens": -5}, "max_completion_tokens"),
        ({"messages": [{"role": "user", "content": "  "}]}, "messages"),
        ({"messages": HELLO, "n": 3}, "n"),
    ],
)
def test_bad_parameters_are_400_naming_them(bare_server: LiveServer, body: dict, param: str) -> None:
    r = post(bare_server, body)
    assert r.status_code == 400, r.text
    err = envelope(r)
    assert err["param"] == param, err
    assert err["type"] == "invalid_request_error"


def test_malformed_json_is_400(bare_server: LiveServer) -> None:
    r = post(bare_server, content=b'{"messages": [')
    assert r.status_code == 400
    assert envelope(r)["code"] == "invalid_json"


def test_unknown_model_is_404_model_not_found(bare_server: LiveServer) -> None:
    r = post(bare_server, {"model": "gpt-17", "messages": HELLO})
    assert r.status_code == 404
    err = envelope(r)
    assert err["code"] == "model_not_found" and err["param"] == "model"
    assert err["type"] == "invalid_request_error"  # as OpenAI reports it


def test_no_active_model_is_503(bare_server: LiveServer) -> None:
    r = post(bare_server, {"messages": HELLO, "unknown_field": {"ignored": True}})
    assert r.status_code == 503
    assert "tray" in envelope(r)["message"]


def test_hydra_without_agent_is_a_clear_error_not_a_fake_answer(bare_server: LiveServer) -> None:
    bare_server.services.context.hydra = None
    bare_server.settings.update(active_model="llama_cpp::x::missing.gguf")
    r = post(bare_server, {"model": "tater/hydra", "messages": HELLO})
    assert r.status_code == 501
    assert envelope(r)["code"] == "hydra_not_available"


def test_model_that_cannot_load_is_an_error_naming_the_file(bare_server: LiveServer) -> None:
    r = post(bare_server, {"model": "llama_cpp::x::missing.gguf", "messages": HELLO})
    assert r.status_code >= 500
    assert "missing.gguf" in envelope(r)["message"]
    # the hub stays usable: models still list
    assert (
        httpx.get(bare_server.base_url + "/models", headers={"X-API-Key": bare_server.key}).status_code == 200
    )


def test_openapi_document_describes_the_api(bare_server: LiveServer) -> None:
    doc = httpx.get(bare_server.root + "/openapi.json").json()
    assert "/v1/chat/completions" in doc["paths"] and "/v1/models" in doc["paths"]
    op = doc["paths"]["/v1/chat/completions"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert {"messages", "temperature", "max_tokens", "stream"} <= set(body["properties"])
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"choices", "usage"} <= set(ok["properties"])
