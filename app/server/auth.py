"""The gate in front of every API route: disabled -> 404, no key -> 403, wrong key -> 401."""

from __future__ import annotations

import asyncio

from quart import Request

from app.server.context import ServerContext
from app.server.errors import ApiError


def presented_key(request: Request) -> str | None:
    """The key from ``Authorization: Bearer``, ``X-API-Key`` or ``?api_key=``, in that order."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    header = request.headers.get("X-API-Key", "").strip()
    if header:
        return header
    return request.args.get("api_key") or None


async def check_access(ctx: ServerContext, request: Request) -> str:
    """Raise the right ApiError, or return the (valid) key.  The keyring is read off the loop."""
    if not ctx.settings.current.api_enabled:
        raise ApiError(404, "The Tater API is disabled. Enable it from the Tater tray icon.",
                       code="api_disabled", error_type="invalid_request_error")
    status = ctx.keys.peek() or await asyncio.to_thread(ctx.keys.status)
    if not status.key:
        raise ApiError(403, f"No API key is configured. {status.problem or ''}".strip(),
                       code="no_key_configured")
    candidate = presented_key(request)
    if not (ctx.keys.matches(candidate) or await asyncio.to_thread(ctx.keys.verify, candidate)):
        what = "No API key was provided" if not candidate else "Incorrect API key provided"
        raise ApiError(401, f"{what}. Send it as 'Authorization: Bearer <key>', 'X-API-Key', or "
                       "'?api_key='. Copy it from the Tater tray menu.", code="invalid_api_key",
                       headers={"WWW-Authenticate": 'Bearer realm="tater"'})
    return candidate  # type: ignore[return-value]
