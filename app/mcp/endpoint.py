"""``/mcp`` on the Quart app: the SDK's Streamable HTTP transport behind Tater's own gates.

The request passes the same hooks as every API request first: the Host/Origin screening and
the failed-key throttle (``app.server.security``), then :func:`app.server.auth.check_access`
(API off → 404, no key → 403, wrong key → 401), and it is written to the request log.  Only
then is it handed, as a plain ASGI call, to the SDK's ``StreamableHTTPSessionManager``
(stateless, JSON responses), whose answers and errors are MCP's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from quart import Quart, Response, current_app, g, request
from quart_schema import hide

from app.keystore import key_id
from app.server.auth import check_access
from app.server.context import ServerContext
from app.server.errors import ApiError
from app.server.security import throttled
from app.server.tracking import begin_tracking
from app.verbas.base import Origin

if TYPE_CHECKING:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
THROTTLE_KEY = "tater.auth_throttle"  # set by app.server.security.install_security
SESSION_HEADER = "Mcp-Session-Id"
REFUSED_CODE = -32001  # JSON-RPC server-error range: refused by Tater's gate (key, host, ...)


def install_mcp_endpoint(app: Quart, ctx: ServerContext) -> None:
    """Register ``/mcp``.  Call after ``install_hardening`` and before the auth gate.

    The SDK is imported, and its session manager started, by the first ``/mcp`` request
    (importing it costs about a second, which a server that never sees MCP should not pay).
    """
    running: dict[str, Any] = {}
    starting = asyncio.Lock()

    async def manager() -> StreamableHTTPSessionManager:
        async with starting:
            if "manager" not in running:
                running["manager"], running["stop"], running["task"] = await start_manager(ctx)
        return running["manager"]

    @app.after_serving
    async def _stop_mcp() -> None:
        if "task" in running:
            running["stop"].set()
            with contextlib.suppress(Exception):
                await running["task"]

    @app.before_request
    async def _mcp_gate() -> None:
        if request.path != MCP_PATH or request.method == "OPTIONS":
            return
        address = request.remote_addr or ""
        throttle = app.extensions.get(THROTTLE_KEY)
        limits = ctx.settings.current.limits
        wait = throttle.retry_after(address, limits.auth_failures_per_minute) if throttle else None
        if wait is not None:
            raise throttled(address, wait)
        g.api_key = await check_access(ctx, request)
        if not ctx.settings.current.mcp.server_enabled:
            raise ApiError(404, "Tater's MCP server is turned off. Turn it on under Settings ▸ "
                           "Hydra ▸ MCP.", code="mcp_disabled")
        begin_tracking(ctx.request_log, mode="mcp")

    @app.after_request
    async def _refusals_as_jsonrpc(response: Response) -> Response:
        if request.path != MCP_PATH or response.status_code < 400 or request.method == "OPTIONS":
            return response
        return await as_jsonrpc_error(response)

    @app.route(MCP_PATH, methods=["GET", "POST", "DELETE"])
    @hide  # MCP's own protocol, not part of the OpenAI-style OpenAPI contract
    async def mcp_endpoint() -> Response:
        return await forward(await manager(), mcp_origin(request.headers.get(SESSION_HEADER),
                                                         g.get("api_key")))


async def start_manager(ctx: ServerContext) -> tuple[StreamableHTTPSessionManager, asyncio.Event,
                                                     asyncio.Task[None]]:
    """The SDK's session manager (stateless, JSON answers) over Tater's MCP server, running."""
    # The first import takes a second or more: do it off the loop, other requests go on.
    await asyncio.to_thread(importlib.import_module, "mcp.server.streamable_http_manager")
    await asyncio.to_thread(importlib.import_module, "app.mcp.tater_server")
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    from app.mcp.tater_server import VerbaSource, build_server

    source = VerbaSource(ctx.settings, registry=lambda: ctx.hydra.verbas if ctx.hydra else None,
                         secrets=lambda: ctx.hydra.secrets if ctx.hydra else None)
    manager = StreamableHTTPSessionManager(app=build_server(source), json_response=True,
                                           stateless=True, security_settings=None)
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with manager.run():
            started.set()
            await stop.wait()

    task = asyncio.create_task(hold(), name="tater-mcp")
    await started.wait()
    return manager, stop, task


async def as_jsonrpc_error(response: Response) -> Response:
    """Tater's own refusal (an OpenAI error envelope) as a JSON-RPC error an MCP client shows."""
    if not (response.content_type or "").startswith("application/json"):
        return response
    try:
        envelope = json.loads(await response.get_data(as_text=True))
        error = envelope["error"]
        message, code = str(error["message"]), error.get("code")
    except (ValueError, KeyError, TypeError):
        return response  # already MCP's own shape (the SDK's answers are JSON-RPC)
    try:
        request_id = json.loads(await request.get_data(as_text=True)).get("id")
    except (ValueError, AttributeError):
        request_id = None
    body = {"jsonrpc": "2.0", "id": request_id,
            "error": {"code": REFUSED_CODE, "message": message,
                      "data": {"status": response.status_code, "code": code}}}
    response.set_data(json.dumps(body))
    return response


def mcp_origin(session: str | None, api_key: str | None) -> Origin:
    """Who is asking over MCP: the key's id, and the MCP session when the client sent one."""
    kid = key_id(api_key) if api_key else None
    sid = (session or "").strip()[:120] or (kid or "anonymous")
    return Origin(session_id=f"mcp:{sid}", api_key_id=kid, platform="mcp")


async def forward(manager: StreamableHTTPSessionManager, origin: Origin) -> Response:
    """Run the SDK's ASGI handler for the current request and stream its answer back."""
    from app.mcp.tater_server import ORIGIN_SCOPE_KEY

    body = await request.get_data()
    scope = dict(request.scope)
    scope[ORIGIN_SCOPE_KEY] = origin
    start: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
    gone = asyncio.Event()
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and not start.done():
            start.set_result(message)
        elif message["type"] == "http.response.body":
            if message.get("body"):
                chunks.put_nowait(bytes(message["body"]))
            if not message.get("more_body", False):
                chunks.put_nowait(None)

    task = asyncio.create_task(manager.handle_request(scope, receive, send), name="tater-mcp-req")
    await asyncio.wait({start, task}, return_when=asyncio.FIRST_COMPLETED)
    if not start.done():
        gone.set()
        error = task.exception() if not task.cancelled() else None
        log.error("the MCP transport ended without answering: %r", error)
        raise ApiError(500, "Tater's MCP server failed to answer this request; see the log.",
                       code="mcp_failed", error_type="server_error")
    head = start.result()

    async def stream() -> AsyncIterator[bytes]:
        try:
            while (chunk := await chunks.get()) is not None:
                yield chunk
        finally:
            gone.set()
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)

    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in head.get("headers", [])]
    response = current_app.response_class(stream(), status=head["status"], headers=headers)
    response.timeout = None
    return response
