"""API errors in the protocol's own envelope.

OpenAI's ``{"error": {"message", "type", "param", "code"}}`` with a string code everywhere, except on
Anthropic's Messages routes (``/v1/messages...``), which answer ``{"type": "error", "error": {"type",
"message"}}`` (:func:`error_body_for` is the one place that decides, by the request's path).
"""

from __future__ import annotations

import re
from typing import Any

from quart import Quart, Response, has_request_context, jsonify, request
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

from app.providers.base import ProviderError

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 413: "invalid_request_error", 422: "invalid_request_error",
          429: "rate_limit_error", 501: "not_implemented_error"}

_TOO_LONG = re.compile(r"prompt is (\d+) tokens long.*context window is (\d+) tokens", re.DOTALL)
"""The numbers in a ``context_length_exceeded`` message (limits.py and the runtimes word it so)."""

ANTHROPIC_PATH_PREFIX = "/v1/messages"
"""Routes under this path answer errors in Anthropic's shape."""
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                    503: "overloaded_error", 529: "overloaded_error"}


class ApiError(Exception):
    """Raise anywhere in a request to answer with an OpenAI error envelope."""

    def __init__(self, status: int, message: str, *, code: str, param: str | None = None,
                 error_type: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.error_type = error_type or _TYPES.get(status, "server_error" if status >= 500 else
                                                    "invalid_request_error")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.error_type,
                          "param": self.param, "code": self.code}}

    def anthropic_body(self) -> dict[str, Any]:
        """The same error in Anthropic's shape.  A prompt longer than the context reads as
        Anthropic words it (``prompt is too long: N tokens > M maximum``): Claude Code compacts
        its conversation when it sees that."""
        fallback = "api_error" if self.status >= 500 else "invalid_request_error"
        kind = _ANTHROPIC_TYPES.get(self.status, fallback)
        message = self.message
        sizes = _TOO_LONG.search(message) if self.code == "context_length_exceeded" else None
        if sizes:
            message = f"prompt is too long: {sizes[1]} tokens > {sizes[2]} maximum. {message}"
        return {"type": "error", "error": {"type": kind, "message": message}}

    def response(self) -> Response:
        resp = jsonify(error_body_for(self, request.path if has_request_context() else ""))
        resp.status_code = self.status
        for k, v in self.headers.items():
            resp.headers[k] = v
        return resp


def uses_anthropic_errors(path: str) -> bool:
    """True for the Messages API's routes (``/v1/messages``, ``/v1/messages/count_tokens``)."""
    return path == ANTHROPIC_PATH_PREFIX or path.startswith(ANTHROPIC_PATH_PREFIX + "/")


def error_body_for(err: ApiError, path: str) -> dict[str, Any]:
    """The error envelope of the protocol served at ``path``."""
    return err.anthropic_body() if uses_anthropic_errors(path) else err.body()


def from_provider_error(exc: ProviderError) -> ApiError:
    """Map a runtime error to the API error it means."""
    return ApiError(exc.status, exc.message, code=exc.code, param=exc.param,
                    error_type=exc.error_type if exc.status < 500 else "server_error")


_UNION_LABEL = re.compile(r"((constrained-)?(str|int|float|bool|none|bytes)"
                          r"|(function-\w+|union|list|dict|literal|tagged-union)(\[.*\])?)")


def param_path(loc: tuple[Any, ...]) -> str:
    """``('messages', 0, 'role')`` -> ``messages[0].role``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _UNION_LABEL.fullmatch(str(part)):
            continue  # pydantic's union-branch labels, not field names (but ``stream`` is a field)
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def validation_error(exc: RequestSchemaValidationError) -> ApiError:
    """The first pydantic problem as a 400 naming the parameter."""
    err = exc.validation_error
    errors = err.errors() if hasattr(err, "errors") else []
    if not errors:
        return ApiError(400, f"Invalid request body: {err}", code="invalid_request")
    first = errors[0]
    param = param_path(tuple(first.get("loc", ())))
    msg = first.get("msg", "invalid value")
    if first.get("type") == "missing":
        return ApiError(400, f"Missing required parameter: '{param}'.", code="missing_required_parameter",
                        param=param)
    if first.get("type") in ("json_invalid", "model_type", "model_attributes_type") and param == "body":
        return ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    return ApiError(400, f"Invalid value for '{param}': {msg}.", code="invalid_value", param=param)


def register_error_handlers(app: Quart) -> None:
    """Every error leaves the app as an OpenAI envelope."""

    @app.errorhandler(ApiError)
    async def _api_error(exc: ApiError) -> Response:
        return exc.response()

    @app.errorhandler(ProviderError)
    async def _provider_error(exc: ProviderError) -> Response:
        return from_provider_error(exc).response()

    @app.errorhandler(RequestSchemaValidationError)
    async def _schema_error(exc: RequestSchemaValidationError) -> Response:
        return validation_error(exc).response()

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 400:
            return ApiError(400, "The request body is not valid JSON.", code="invalid_json").response()
        if status == 413:
            return ApiError(413, "The request body is too large.", code="request_too_large").response()
        if status == 405:
            allowed = ", ".join(sorted(getattr(exc, "valid_methods", None) or ()))
            return ApiError(405, f"Method not allowed: {exc.description}", code="method_not_allowed",
                            error_type="invalid_request_error",
                            headers={"Allow": allowed} if allowed else None).response()
        if status == 404:
            return ApiError(404, "Unknown endpoint.", code="unknown_url").response()
        return ApiError(status, exc.description or exc.name, code=exc.name.lower().replace(" ", "_"),
                        error_type="invalid_request_error" if status < 500 else "server_error").response()

    @app.errorhandler(RecursionError)
    async def _too_deep(exc: RecursionError) -> Response:  # input nested deeper than code expects
        return ApiError(400, "The request is nested too deeply to process.", code="invalid_value").response()

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        app.logger.exception("unhandled error")
        return ApiError(500, f"Internal error: {type(exc).__name__}: {exc}", code="internal_error").response()
