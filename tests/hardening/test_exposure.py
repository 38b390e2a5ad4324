"""Network exposure over real HTTP: Host allow-list, CORS and preflight, failed-auth throttling."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.server.security import AuthThrottle, host_allowed, origin_allowed, split_host
from app.settings import ModelRow
from tests.conftest import LiveServer, start_live_server


@pytest.fixture
def server(clean_env: Path) -> Iterator[LiveServer]:
    row = ModelRow(id="llama_cpp::x::missing.gguf", provider="llama_cpp", source="/nonexistent/missing.gguf")
    live = start_live_server(clean_env, [row], None)
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]


def get(live: LiveServer, path: str = "/v1/models", key: str | None = "", **headers: str) -> httpx.Response:
    h = dict(headers)
    if key is not None:
        h["Authorization"] = f"Bearer {key or live.key}"
    return httpx.get(live.root + path, headers=h, timeout=10)


# -- Host -----------------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["localhost", "localhost:8501", "127.0.0.1:8501", "[::1]:8501",
                                  "192.168.1.20:8501", "app.localhost", socket.gethostname()])
def test_local_names_and_ip_literals_are_served(server: LiveServer, host: str) -> None:
    assert get(server, Host=host).status_code == 200


@pytest.mark.parametrize("path", ["/v1/models", "/openapi.json"])
def test_a_foreign_host_name_is_403_everywhere(server: LiveServer, path: str) -> None:
    r = get(server, path, Host="attacker.example:8501")
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "host_not_allowed"


def test_configured_hosts_apply_on_the_next_request(server: LiveServer) -> None:
    assert get(server, Host="tater.lan").status_code == 403
    server.settings.update(limits={"allowed_hosts": ["tater.lan", "*.home.arpa"]})
    assert get(server, Host="tater.lan:8501").status_code == 200
    assert get(server, Host="desk.home.arpa").status_code == 200
    assert get(server, Host="home.arpa.evil.example").status_code == 403


def test_host_rules() -> None:
    assert split_host("[::1]:8501") == "::1" and split_host("Example.COM.:80") == "example.com"
    assert host_allowed(None, []) and host_allowed("10.0.0.3", [])
    assert not host_allowed("localhost.evil.example", [])
    assert not host_allowed("evil-localhost", [])


# -- CORS -----------------------------------------------------------------------------------

def preflight(live: LiveServer, origin: str) -> httpx.Response:
    return httpx.options(live.base_url + "/chat/completions", timeout=10, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os"})


def test_cors_is_off_by_default(server: LiveServer) -> None:
    r = preflight(server, "https://example.org")
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    r = get(server, Origin="https://example.org")  # even with the right key
    assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"
    assert get(server).status_code == 200  # clients without Origin (SDKs, curl) are unaffected


def test_allowed_origins_exact_and_patterns(server: LiveServer) -> None:
    server.settings.update(limits={"allowed_origins": ["app://obsidian.md", "chrome-extension://*"]})
    for origin in ("app://obsidian.md", "chrome-extension://abcdefghijklmnop"):
        r = preflight(server, origin)  # no key: preflights never carry credentials
        assert r.status_code == 204, r.text
        assert r.headers["access-control-allow-origin"] == origin
        assert "POST" in r.headers["access-control-allow-methods"]
        assert "x-stainless-os" in r.headers["access-control-allow-headers"]
        assert r.headers["vary"] == "Origin"
        ok = get(server, Origin=origin)
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == origin
        bad_key = get(server, key="wrong", Origin=origin)  # the page can read why it failed
        assert bad_key.status_code == 401 and bad_key.headers["access-control-allow-origin"] == origin
    for origin in ("app://obsidian.md.evil", "https://chrome-extension.evil", "chrome-extension://a/b"):
        assert preflight(server, origin).status_code == 403, origin


def test_origin_rules() -> None:
    assert origin_allowed("http://localhost:3000", ["http://localhost:*"])
    assert not origin_allowed("http://localhost.evil:3000", ["http://localhost:*"])
    assert origin_allowed("https://anything", ["*"])
    assert origin_allowed("http://127.0.0.1:8501", [], "127.0.0.1:8501")  # same origin
    assert not origin_allowed("null", ["https://a.example"]) and origin_allowed("null", ["null"])


# -- failed-auth throttling -----------------------------------------------------------------

def test_failed_auth_is_throttled_per_address(server: LiveServer) -> None:
    server.settings.update(limits={"auth_failures_per_minute": 3})
    other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10)
    url = server.base_url + "/models"
    with other:
        codes = [other.get(url, headers={"Authorization": f"Bearer guess-{i}"}).status_code
                 for i in range(3)]
        assert codes == [401, 401, 401]
        blocked = other.get(url, headers={"Authorization": "Bearer guess-3"})
        assert blocked.status_code == 429
        assert 1 <= int(blocked.headers["Retry-After"]) <= 60
        assert blocked.json()["error"]["type"] == "rate_limit_error"
        # the right key is never throttled, even from the throttled address
        assert other.get(url, headers={"Authorization": f"Bearer {server.key}"}).status_code == 200
        # another client address is not affected at all
        assert get(server).status_code == 200
        assert get(server, key="wrong").status_code == 401
        server.settings.update(limits={"auth_failures_per_minute": 10})  # live
        assert other.get(url, headers={"Authorization": "Bearer guess-4"}).status_code == 401


def test_an_app_retrying_a_stale_key_does_not_lock_out_its_neighbours(server: LiveServer) -> None:
    """Every local app is 127.0.0.1: one left with the old key after a rotation must not block them."""
    server.settings.update(limits={"auth_failures_per_minute": 3})
    stale = [get(server, key="tater-" + "0" * 64).status_code for _ in range(12)]
    assert stale == [401] * 12  # told the key is wrong every time, never throttled
    assert get(server).status_code == 200  # the app with the right key, same address
    # the stale key counted once; two more different keys reach the limit of 3
    assert [get(server, key=f"guess-{i}").status_code for i in range(3)] == [401, 401, 429]
    assert get(server, key="guess-9").status_code == 429  # guessing (different keys) is throttled
    assert get(server).status_code == 200  # ... but never the right key


def test_a_web_page_cannot_lock_local_apps_out(server: LiveServer) -> None:
    """``<img src="http://127.0.0.1:8501/v1/models?api_key=N">`` x 21: refused before it counts."""
    for i in range(21):
        r = httpx.get(f"{server.base_url}/models?api_key=guess-{i}", timeout=10, headers={
            "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "cross_site_request"
    assert get(server).status_code == 200
    assert get(server, key="guess-0").status_code == 401  # not throttled: nothing was counted
    same_site = httpx.get(f"{server.base_url}/models?api_key={server.key}", timeout=10,
                          headers={"Sec-Fetch-Site": "same-site"})
    assert same_site.status_code == 403  # another local port's page is another site too
    typed = get(server, **{"Sec-Fetch-Site": "none"})  # the user opened the URL themselves
    assert typed.status_code == 200


def test_cross_site_from_an_allowed_origin_is_served(server: LiveServer) -> None:
    server.settings.update(limits={"allowed_origins": ["chrome-extension://*"]})
    r = get(server, Origin="chrome-extension://abc", **{"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 200


def test_throttle_window_slides() -> None:
    now = [1000.0]
    t = AuthThrottle(clock=lambda: now[0])
    for i in range(3):
        t.failed("a", f"key-{i}")
        now[0] += 10
    assert t.retry_after("a", 3) == 30  # the first failure leaves the window at 1060
    assert t.retry_after("b", 3) is None
    now[0] += 31
    assert t.retry_after("a", 3) is None
    now[0] += 60  # every earlier failure has left the window
    for _ in range(5):
        t.failed("a", "same")
        t.failed("a", None)
    assert t.retry_after("a", 3) is None  # two distinct keys, however often


def test_loopback_by_default_lan_only_when_asked() -> None:
    from app.settings import Settings

    assert Settings().bind_host == "127.0.0.1"
    assert Settings(allow_lan=True).bind_host == "0.0.0.0"
