"""web_fetch against a local HTTP server: loopback refused by default, allowed by setting."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from app.verbas import Origin, VerbaContext, VerbaError
from app.verbas.builtin.web_fetch import is_public, pinned_request, web_fetch
from tests.hydra.support import Seen, http_server

PAGE = (b"<html><head><title>Tater  Test</title><style>p{}</style></head><body>"
        b"<h1>Hello</h1><p>Potatoes are <b>great</b>.</p><script>alert(1)</script>"
        b"<ul><li>one</li><li>two</li></ul></body></html>")


def route(req: Seen) -> tuple[int, dict[str, str], bytes]:
    if req.path == "/page":
        return 200, {"Content-Type": "text/html; charset=utf-8"}, PAGE
    if req.path == "/big":
        return 200, {"Content-Type": "text/plain"}, b"x" * 50_000
    if req.path == "/redirect":
        return 302, {"Location": "/page"}, b""
    if req.path == "/image":
        return 200, {"Content-Type": "image/png"}, b"\x89PNG"
    if req.path == "/json":
        return 200, {"Content-Type": "application/json"}, b'{"a": [1, 2]}'
    return 404, {}, b"nope"


def ctx(**settings: object) -> VerbaContext:
    return VerbaContext(origin=Origin("s"), settings=settings, timeout=10)


async def test_loopback_refused_by_default() -> None:
    with http_server(route) as (url, seen), pytest.raises(
            VerbaError, match=r"private or local address \(127\.0\.0\.1\)"):
        await web_fetch.handler(ctx(), url=url + "/page")
    assert seen == []  # nothing was even requested


async def test_page_to_text_when_allowed() -> None:
    with http_server(route) as (url, _):
        result = await web_fetch.handler(ctx(allow_private=True), url=url + "/page")
    assert result.ok and result.data["title"] == "Tater Test"
    assert result.data["text"] == "Hello\n\nPotatoes are great.\n\n- one\n\n- two"
    assert "alert" not in result.data["text"] and "p{}" not in result.data["text"]
    assert result.summary == f"Fetched {url}/page — Tater Test."


async def test_redirect_size_limit_and_types() -> None:
    with http_server(route) as (url, seen):
        redirected = await web_fetch.handler(ctx(allow_private=True), url=url + "/redirect")
        big = await web_fetch.handler(ctx(allow_private=True, max_bytes=1000), url=url + "/big",
                                      max_chars=500)
        data = await web_fetch.handler(ctx(allow_private=True), url=url + "/json")
        with pytest.raises(VerbaError, match=r"not a text page \(image/png\)"):
            await web_fetch.handler(ctx(allow_private=True), url=url + "/image")
        with pytest.raises(VerbaError, match="answered HTTP 404"):
            await web_fetch.handler(ctx(allow_private=True), url=url + "/missing")
    assert redirected.data["url"].endswith("/page") and redirected.data["title"] == "Tater Test"
    assert big.data["truncated"] and len(big.data["text"]) == 500 and "(cut short)" in big.summary
    assert '"a"' in data.data["text"]
    assert [r.path for r in seen[:2]] == ["/redirect", "/page"]


async def test_schemes_and_addresses() -> None:
    with pytest.raises(VerbaError, match="only http and https"):
        await web_fetch.handler(ctx(), url="file:///etc/passwd")
    with pytest.raises(VerbaError, match="private or local"):
        await web_fetch.handler(ctx(), url="http://10.1.2.3/")
    with pytest.raises(VerbaError, match="private or local"):
        await web_fetch.handler(ctx(), url="http://[::ffff:127.0.0.1]/")
    assert is_public(ipaddress.ip_address("93.184.216.34"))
    assert not is_public(ipaddress.ip_address("169.254.169.254"))
    assert web_fetch.acts_on_world and not web_fetch.default_enabled


def test_pinned_url_keeps_host_and_sni() -> None:
    assert pinned_request("https://example.com:8443/a?b=1", "93.184.216.34") == (
        "https://93.184.216.34:8443/a?b=1", {"Host": "example.com:8443"},
        {"sni_hostname": "example.com"})
    assert pinned_request("http://example.com/", "2606:2800::1") == (
        "http://[2606:2800::1]/", {"Host": "example.com"}, {})
    assert pinned_request("http://example.com/", None) == ("http://example.com/", {}, {})


async def test_connects_to_the_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """The address that passed the check is the one connected to (no second DNS lookup)."""
    import asyncio

    import app.verbas.builtin.web_fetch as mod

    lookups: list[str] = []

    async def fake_getaddrinfo(host: str, port: int, **kw: object) -> list[tuple]:
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_getaddrinfo)
    monkeypatch.setattr(mod, "is_public", lambda ip: True)  # pretend loopback is public
    with http_server(route) as (url, seen):
        port = url.rsplit(":", 1)[1]
        result = await web_fetch.handler(ctx(), url=f"http://tater.test:{port}/page")
    assert result.ok and result.data["url"] == f"http://tater.test:{port}/page"
    assert lookups == ["tater.test"] and seen[0].headers["host"] == f"tater.test:{port}"


@pytest.mark.parametrize("address", [
    "64:ff9b::a9fe:a9fe",    # NAT64 of 169.254.169.254 (cloud metadata behind a NAT64 gateway)
    "64:ff9b::7f00:1",       # NAT64 of 127.0.0.1
    "64:ff9b:1::5db8:d822",  # local-use NAT64 prefix: whatever the local gateway maps it to
    "2002:7f00:1::1",        # 6to4 of 127.0.0.1
    "2002:a00:1::1",         # 6to4 of 10.0.0.1
    "::127.0.0.1",           # IPv4-compatible
    "::5db8:d822",           # IPv4-compatible, even of a public address (deprecated form)
    "fec0::1",               # site-local
    "192.0.0.8", "192.0.0.9", "192.0.0.170",  # IETF protocol assignments
])
def test_embedded_and_legacy_forms_of_private_addresses_are_refused(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["64:ff9b::5db8:d822", "2002:5db8:d822::1", "2606:2800::1"])
def test_embedded_public_addresses_stay_allowed(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


async def test_nat64_metadata_literal_is_refused_end_to_end() -> None:
    with pytest.raises(VerbaError, match="private or local"):
        await web_fetch.handler(ctx(), url="http://[64:ff9b::a9fe:a9fe]/latest/meta-data/")
