"""The Quart application factory."""

from __future__ import annotations

from quart import Quart, Response, g, request
from quart_schema import Info, QuartSchema, hide

from app import __version__
from app.mcp.endpoint import install_mcp_endpoint
from app.server import (
    routes_chat,
    routes_completions,
    routes_embeddings,
    routes_messages,
    routes_models,
    routes_pools,
    routes_responses,
)
from app.server.auth import check_access
from app.server.context import ServerContext
from app.server.errors import ApiError, register_error_handlers
from app.server.hardening import install_hardening
from app.server.tracking import (
    MAX_LOGGED_BODY,
    RequestTracker,
    begin_tracking,
    error_reason,
    requested_model,
)


def create_app(ctx: ServerContext) -> Quart:
    """A Quart app serving the OpenAI-compatible API over the shared context."""
    app = Quart("tater")
    app.url_map.merge_slashes = False  # ``//v1//models`` is a 404 envelope, not an HTML redirect
    app.config.update(
        RESPONSE_TIMEOUT=None,  # generations may legitimately run for minutes
        BODY_TIMEOUT=60,
        MAX_CONTENT_LENGTH=ctx.settings.current.limits.max_body_bytes,
        PROVIDE_AUTOMATIC_OPTIONS=True,
    )
    QuartSchema(
        app,
        openapi_path="/openapi.json",
        swagger_ui_path=None, redoc_ui_path=None, scalar_ui_path=None,  # they load assets from CDNs
        info=Info(title="Tater Desktop OpenAI-compatible API", version=__version__),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"},
                          "apiKeyHeader": {"type": "apiKey", "in_": "header", "name": "X-API-Key"}},
        security=[{"bearer": []}, {"apiKeyHeader": []}],
    )
    app.extensions["tater"] = ctx
    register_error_handlers(app)
    install_hardening(app, ctx)  # host/origin/throttle screening, live body limit, queues
    install_mcp_endpoint(app, ctx)  # /mcp: the Verbas over MCP, behind the same key and screening
    app.register_blueprint(routes_models.bp)
    app.register_blueprint(routes_pools.bp)
    app.register_blueprint(routes_chat.bp)
    app.register_blueprint(routes_completions.bp)
    app.register_blueprint(routes_embeddings.bp)
    app.register_blueprint(routes_responses.bp)
    app.register_blueprint(routes_messages.bp)

    @app.route("/", methods=["GET", "HEAD"])
    @hide  # not part of the API contract
    async def _root() -> Response:
        """A liveness answer at the root (Claude Code sends ``HEAD /`` before its first request)."""
        return Response("Tater Desktop API: see /v1/models and /openapi.json\n", content_type="text/plain")

    @app.before_request
    async def _gate() -> Response | None:
        if request.method == "OPTIONS":
            return None
        if not request.path.startswith("/v1/"):
            if not ctx.settings.current.api_enabled:
                raise ApiError(404, "The Tater API is disabled. Enable it from the Tater tray icon.",
                               code="api_disabled")
            return None
        begin_tracking(ctx.request_log)  # first, so refused requests (401, 403, 404) are logged too
        g.api_key = await check_access(ctx, request)
        return None

    @app.after_request
    async def _record(response: Response) -> Response:
        tracker: RequestTracker | None = g.get("tracker")
        if tracker is not None:
            if request.method == "POST" and response.status_code not in (408, 413):
                data = await request.get_data()  # (a too-large/late body raises again)
                # any bytes at all: invalid UTF-8 is shown with U+FFFD, never raised
                tracker.body = data[:MAX_LOGGED_BODY].decode("utf-8", errors="replace")
            if tracker.model is None:
                tracker.requested_model = requested_model(tracker.body)
            if g.get("streaming"):
                tracker.stream = True
            else:
                reason = await error_reason(response) if response.status_code >= 400 else ""
                tracker.finish(response.status_code, error=reason)
        return response

    @app.teardown_request
    async def _never_lose_a_record(exc: BaseException | None) -> None:
        tracker: RequestTracker | None = g.get("tracker")
        if tracker is not None and not g.get("streaming"):
            tracker.finish(500 if exc else 200)

    return app
