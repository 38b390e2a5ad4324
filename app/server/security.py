"""Network exposure: Host allow-list, CORS, and failed-auth throttling.

Runs before the auth gate, in this order:

1. **Host** (against DNS rebinding): ``localhost`` and ``*.localhost``, this machine's names
   (hostname, ``hostname.local``, FQDN), any IP literal, and ``limits.allowed_hosts`` (exact
   names or ``*.suffix``).  A rebinding attack always carries the attacker's *name* in Host,
   so IP literals are safe to accept (they are how LAN clients reach us).  Other hosts → 403.
2. **Origin** (CORS, off by default): a request that carries an ``Origin`` (browsers only) must
   match ``limits.allowed_origins`` (exact, or patterns with ``*`` such as
   ``chrome-extension://*``; ``*`` alone allows every origin).  Other origins → 403, so a page
   in the user's browser can neither call the API nor burn the auth-failure budget.
   A preflight ``OPTIONS`` is answered here (204, or 403), never asking for the key.
3. **Cross-site requests**: a request a browser marks ``Sec-Fetch-Site: cross-site`` or
   ``same-site`` (another page, e.g. ``<img src="http://127.0.0.1:8501/v1/models?api_key=N">``,
   which carries no ``Origin``) is refused with 403 unless its ``Origin`` is allowed.  It never
   reaches the key check, so no web page can spend the failure budget below.
4. **Auth throttling**: an address that failed (401) with ``limits.auth_failures_per_minute``
   *different* keys in the last 60 s gets 429 with ``Retry-After`` for further *wrong* keys
   until the oldest one ages out; other addresses are unaffected.  A request carrying the right
   key is never throttled: every local app shares 127.0.0.1, so anything else would let one
   misbehaving (or hostile) local client lock all of them out.  The keys are long and random,
   so the throttle is there to keep guessing slow and quiet, not to stand between the user
   and the server.  An app retrying one stale key (after a rotation) counts once.  Failed keys
   are kept only as short hashes.

Every setting is read per request, so changes apply to the next request.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import math
import re
import socket
import time
from collections.abc import Callable

from quart import Quart, Request, Response, request

from app.server.auth import presented_key
from app.server.context import ServerContext
from app.server.errors import ApiError
from app.settings import LimitSettings

WINDOW_SECONDS = 60.0
MAX_TRACKED_ADDRESSES = 4096
MAX_KEYS_PER_ADDRESS = 10_000
PREFLIGHT_MAX_AGE = "600"
ALLOWED_METHODS = "GET, POST, OPTIONS"
DEFAULT_ALLOWED_HEADERS = "Authorization, Content-Type, X-API-Key"
EXPOSED_HEADERS = "Retry-After, X-Request-Id"


# -- Host ---------------------------------------------------------------------------------

@functools.cache
def machine_names() -> frozenset[str]:
    """This machine's own names, lower-case (computed once)."""
    names = {"localhost"}
    for get in (socket.gethostname, socket.getfqdn):
        try:
            name = get().strip().lower().rstrip(".")
        except OSError:
            continue
        if name:
            names.add(name)
            short = name.split(".")[0]
            names.update({short, short + ".local"})
    return frozenset(names)


def split_host(host_header: str) -> str:
    """``Host`` without its port and brackets, lower-case: ``[::1]:8501`` -> ``::1``."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h[1:]
    if h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h.rstrip(".")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_allowed(host_header: str | None, extra: list[str]) -> bool:
    """Whether a ``Host`` header names this server (see the module docstring)."""
    if not host_header:
        return True  # HTTP/1.0 without Host: not a browser, nothing to rebind
    host = split_host(host_header)
    if _is_ip(host) or host in machine_names() or host.endswith(".localhost"):
        return True
    for entry in extra:
        e = entry.strip().lower().rstrip(".")
        if e.startswith("*.") and (host.endswith(e[1:]) or host == e[2:]):
            return True
        if split_host(e) == host:
            return True
    return False


# -- Origin ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _origin_pattern(pattern: str) -> re.Pattern[str]:
    parts = [re.escape(p) for p in pattern.strip().lower().rstrip("/").split("*")]
    return re.compile("[^/]*".join(parts) + r"\Z") if len(parts) > 1 else re.compile(parts[0] + r"\Z")


def origin_allowed(origin: str, allowed: list[str], host_header: str | None = None) -> bool:
    """Exact origins, ``*``-patterns (``*`` never spans a ``/``), ``*`` = all; same-origin is fine."""
    o = origin.strip().lower().rstrip("/")
    if host_header and o in (f"http://{host_header.lower()}", f"https://{host_header.lower()}"):
        return True
    for entry in allowed:
        e = entry.strip().lower().rstrip("/")
        if e == "*" or e == o or ("*" in e and _origin_pattern(e).match(o)):
            return True
    return False


def _cors_headers(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
            "Access-Control-Expose-Headers": EXPOSED_HEADERS}


def preflight_response(req: Request, limits: LimitSettings) -> Response:
    """The answer to a CORS preflight: 204 with the grants, or 403 (no key is ever asked)."""
    origin = req.headers.get("Origin", "")
    if not origin_allowed(origin, limits.allowed_origins, req.headers.get("Host")):
        return origin_refused(origin).response()
    headers = _cors_headers(origin)
    headers.update({
        "Access-Control-Allow-Methods": ALLOWED_METHODS,
        "Access-Control-Allow-Headers": req.headers.get("Access-Control-Request-Headers")
        or DEFAULT_ALLOWED_HEADERS,
        "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
    })
    if req.headers.get("Access-Control-Request-Private-Network"):
        headers["Access-Control-Allow-Private-Network"] = "true"
    return Response("", status=204, headers=headers)


def origin_refused(origin: str) -> ApiError:
    return ApiError(403, f"Requests from the web origin '{origin}' are not allowed. Add it under Settings "
                    "▸ Server ▸ Allowed origins (patterns like 'chrome-extension://*' work).",
                    code="origin_not_allowed")


# -- auth throttling --------------------------------------------------------------------

class AuthThrottle:
    """Failed-auth attempts per client address over a sliding minute, one count per distinct key."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # address -> failed key's hash -> its last failure, oldest first
        self._failures: dict[str, dict[bytes, float]] = {}

    def _recent(self, address: str) -> dict[bytes, float] | None:
        keys = self._failures.get(address)
        if keys is None:
            return None
        cutoff = self._clock() - WINDOW_SECONDS
        while keys:  # oldest first: drop only what has aged out, without copying the rest
            digest, when = next(iter(keys.items()))
            if when > cutoff:
                break
            del keys[digest]
        if not keys:
            del self._failures[address]
            return None
        return keys

    def retry_after(self, address: str, limit: int) -> int | None:
        """Seconds until ``address`` may try again, or None when it is not throttled."""
        keys = self._recent(address)
        if keys is None or len(keys) < limit:
            return None
        return max(1, math.ceil(list(keys.values())[-limit] + WINDOW_SECONDS - self._clock()))

    def failed(self, address: str, key: str | None) -> None:
        """Record one failed attempt with ``key`` (None: no key given)."""
        if address not in self._failures and len(self._failures) >= MAX_TRACKED_ADDRESSES:
            self._prune()
        keys = self._failures.setdefault(address, {})
        digest = hashlib.blake2b((key or "").encode(), digest_size=8).digest()
        keys.pop(digest, None)  # re-inserted last: the dict stays in time order
        keys[digest] = self._clock()
        if len(keys) > MAX_KEYS_PER_ADDRESS:
            del keys[next(iter(keys))]

    def _prune(self) -> None:
        for address in list(self._failures):
            self._recent(address)
        while len(self._failures) >= MAX_TRACKED_ADDRESSES:  # still full: forget the stalest
            oldest = min(self._failures, key=lambda a: next(reversed(self._failures[a].values())))
            del self._failures[oldest]


async def carries_right_key(ctx: ServerContext, req: Request) -> bool:
    """Whether ``req`` presents the current API key (the keyring is read off the loop)."""
    candidate = presented_key(req)
    if not candidate:
        return False
    return ctx.keys.matches(candidate) or await asyncio.to_thread(ctx.keys.verify, candidate)


CROSS_SITE = frozenset({"cross-site", "same-site"})
"""``Sec-Fetch-Site`` values a browser sends for a request another page started."""


def cross_site_refused(req: Request, limits: LimitSettings) -> ApiError | None:
    """403 for a browser request started by another site whose ``Origin`` is not allowed."""
    if req.headers.get("Sec-Fetch-Site", "").strip().lower() not in CROSS_SITE:
        return None
    origin = req.headers.get("Origin")
    if origin and origin_allowed(origin, limits.allowed_origins, req.headers.get("Host")):
        return None
    return ApiError(403, "Requests started by another web site are not allowed (Sec-Fetch-Site: "
                    f"{req.headers.get('Sec-Fetch-Site')}). Call the API from an app, or add the "
                    "page's origin under Settings ▸ Server ▸ Allowed origins.",
                    code="cross_site_request")


def throttled(address: str, retry_after: int) -> ApiError:
    return ApiError(429, f"Too many failed API key attempts from {address}. Wait {retry_after} s, or "
                    "use the right key from the Tater tray menu (it is never throttled).",
                    code="too_many_auth_failures",
                    headers={"Retry-After": str(retry_after)})


# -- wiring ------------------------------------------------------------------------------

def install_security(app: Quart, ctx: ServerContext) -> AuthThrottle:
    """Register the screening hook (call before the auth gate is registered) and CORS headers."""
    throttle = AuthThrottle()
    app.extensions["tater.auth_throttle"] = throttle

    @app.before_request
    async def _screen() -> Response | None:
        limits = ctx.settings.current.limits
        host = request.headers.get("Host")
        if not host_allowed(host, limits.allowed_hosts):
            raise ApiError(403, f"The host name '{host}' is not allowed (protection against DNS "
                           "rebinding). Use localhost or 127.0.0.1, or add it under Settings ▸ Server "
                           "▸ Allowed hosts.", code="host_not_allowed")
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS" and origin and request.headers.get("Access-Control-Request-Method"):
            return preflight_response(request, limits)
        if origin and not origin_allowed(origin, limits.allowed_origins, host):
            raise origin_refused(origin)
        refused = cross_site_refused(request, limits)
        if refused is not None:
            raise refused
        if request.path.startswith("/v1/") and request.method != "OPTIONS":
            address = request.remote_addr or ""
            wait = throttle.retry_after(address, limits.auth_failures_per_minute)
            if wait is not None and not await carries_right_key(ctx, request):
                raise throttled(address, wait)
        return None

    @app.after_request
    async def _cors_and_count(response: Response) -> Response:
        if response.status_code == 401:
            throttle.failed(request.remote_addr or "", presented_key(request))
        origin = request.headers.get("Origin")
        if origin and origin_allowed(origin, ctx.settings.current.limits.allowed_origins,
                                     request.headers.get("Host")):
            for k, v in _cors_headers(origin).items():
                response.headers[k] = v
        return response

    return throttle
