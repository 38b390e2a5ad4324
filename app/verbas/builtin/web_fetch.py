"""Built-in Verba: fetch an http(s) page as readable text, within size and time limits.

Addresses are resolved first and private, loopback, link-local and other non-public ones
are refused unless the ``allow_private`` setting is on; every redirect is checked again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from typing import Annotated, Any
from urllib.parse import urljoin, urlsplit

import httpx
from pydantic import Field

from app.verbas.base import SettingField, VerbaContext, VerbaError, VerbaResult, verba
from app.verbas.builtin.readable import html_to_text

DEFAULT_MAX_BYTES = 2_000_000
DEFAULT_MAX_CHARS = 8_000
MAX_REDIRECTS = 5
USER_AGENT = "TaterDesktop-Hydra/0.1 (+web_fetch)"


NOT_PUBLIC_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "192.0.0.0/24",     # IETF protocol assignments (192.0.0.8 and friends): never a web server
    "::/96",            # IPv4-compatible ``::a.b.c.d`` (deprecated; some stacks still route it)
    "64:ff9b:1::/48",   # local-use NAT64 (RFC 8215): reaches whatever the local gateway maps it to
    "fec0::/10",        # site-local (deprecated, still routed inside some networks)
))
"""Ranges refused on top of ``is_global``: Python 3.11's table predates the CVE-2024-4032 fix."""

NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: mapped, NAT64 (RFC 6052), 6to4 or Teredo client."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip in NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    return None


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for globally routable unicast addresses, judging an embedded IPv4 by itself."""
    if any(ip in net for net in NOT_PUBLIC_NETWORKS if net.version == ip.version):
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            return is_public(inner)
        if ip.is_site_local:
            return False
    return ip.is_global and not ip.is_multicast


async def check_host(url: str, allow_private: bool) -> str | None:
    """Refuse non-http(s) URLs and non-public addresses (unless allowed).

    Returns the checked address to connect to (None when private addresses are allowed),
    so a second DNS answer cannot swap in a private address after the check.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise VerbaError(f"only http and https pages can be fetched, not {parts.scheme or '?'}:")
    host = parts.hostname
    if not host:
        raise VerbaError("the URL has no host")
    if allow_private:
        return None
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
    except OSError as exc:
        raise VerbaError(f"cannot resolve {host}: {exc}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    for ip in addresses:
        if not is_public(ip):
            raise VerbaError(f"{host} resolves to a private or local address ({ip}); fetching "
                             "those is turned off (web_fetch setting allow_private)")
    return str(addresses[0]) if addresses else None


def pinned_request(url: str, address: str | None) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(url to request, extra headers, httpx extensions) that connect to the checked ``address``
    while keeping the URL's host for the ``Host`` header and TLS SNI (no second DNS lookup)."""
    parts = urlsplit(url)
    if address is None or parts.hostname is None:
        return url, {}, {}
    ip = ipaddress.ip_address(address)
    if str(ip) == parts.hostname.strip("[]"):
        return url, {}, {}
    host_ip = f"[{ip}]" if ip.version == 6 else str(ip)
    netloc = host_ip + (f":{parts.port}" if parts.port else "")
    headers = {"Host": parts.netloc.rsplit("@", 1)[-1]}
    ext = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    return parts._replace(netloc=netloc).geturl(), headers, ext


async def fetch(url: str, *, allow_private: bool, max_bytes: int, timeout: float
                ) -> tuple[str, int, str, bytes, bool, str | None]:
    """(final url, status, content type, body, truncated, charset) after checked redirects."""
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                 headers={"User-Agent": USER_AGENT}) as client:
        for _ in range(MAX_REDIRECTS + 1):
            target, headers, ext = pinned_request(url, await check_host(url, allow_private))
            try:
                request = client.build_request("GET", target, headers=headers, extensions=ext)
                resp = await client.send(request, stream=True)
                try:
                    if resp.is_redirect and "location" in resp.headers:
                        url = urljoin(url, resp.headers["location"])
                        continue
                    body, truncated = bytearray(), False
                    async for piece in resp.aiter_bytes():
                        body.extend(piece)
                        if len(body) > max_bytes:
                            truncated = True
                            del body[max_bytes:]
                            break
                    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
                    return url, resp.status_code, ctype, bytes(body), truncated, resp.charset_encoding
                finally:
                    await resp.aclose()
            except httpx.TimeoutException:
                raise VerbaError(f"the page did not answer within {timeout:g} s") from None
            except httpx.HTTPError as exc:
                raise VerbaError(f"cannot fetch {url}: {type(exc).__name__}: {exc}") from None
    raise VerbaError(f"more than {MAX_REDIRECTS} redirects")


@verba(id="web_fetch", name="Web page fetcher",
       description="Downloads one http(s) web page and returns its readable text.",
       when_to_use="the user gives a URL, or asks what a given web page says.",
       settings=(SettingField("allow_private", "Allow private and local addresses",
                              "Lets Hydra fetch pages on your network and this computer",
                              default=False),
                 SettingField("max_bytes", "Largest download (bytes)", default=DEFAULT_MAX_BYTES),
                 SettingField("timeout_seconds", "Time limit (seconds)", default=10.0)),
       acts_on_world=True)
async def web_fetch(ctx: VerbaContext,
                    url: Annotated[str, Field(description="The http or https URL to fetch",
                                              max_length=2000)],
                    max_chars: Annotated[int, Field(ge=100, le=50_000, description=
                                                    "Longest text to return")] = DEFAULT_MAX_CHARS,
                    ) -> VerbaResult:
    """Fetch a page as text."""
    url = url.strip()
    if "://" not in url:
        url = "https://" + url
    timeout = min(float(ctx.setting("timeout_seconds", 10.0)), ctx.timeout)
    final, status, ctype, body, truncated, charset = await fetch(
        url, allow_private=bool(ctx.setting("allow_private", False)),
        max_bytes=int(ctx.setting("max_bytes", DEFAULT_MAX_BYTES)), timeout=timeout)
    if status >= 400:
        raise VerbaError(f"{final} answered HTTP {status}")
    raw = body.decode(charset or "utf-8", errors="replace")
    title = ""
    if ctype in ("text/html", "application/xhtml+xml") or (not ctype and "<html" in raw[:500].lower()):
        title, text = html_to_text(raw)
    elif ctype.startswith("text/") or ctype in ("application/json", "application/xml", ""):
        text = _pretty_json(raw) if ctype == "application/json" else raw.strip()
    else:
        raise VerbaError(f"{final} is not a text page ({ctype})")
    cut = len(text) > max_chars
    text = text[:max_chars]
    note = " (cut short)" if cut or truncated else ""
    summary = f"Fetched {final}" + (f" — {title}" if title else "") + f"{note}."
    data: dict[str, Any] = {"url": final, "status": status, "title": title, "text": text,
                            "truncated": cut or truncated}
    return VerbaResult.success(summary, data)


def _pretty_json(raw: str) -> str:
    try:
        return json.dumps(json.loads(raw), indent=1, ensure_ascii=False)
    except ValueError:
        return raw.strip()
