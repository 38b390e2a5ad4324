"""Complete the generated OpenAPI document: every error shape, and streamed replies.

quart-schema documents only the models a route declares (its 200).  Every route can also
answer with its protocol's error envelope (400, 401, 403, 404, 413, 429, 500, 503 ...: OpenAI's,
or Anthropic's on the Messages routes), and chat completions and messages answer
``text/event-stream`` when ``stream`` is true; clients and fuzzers
(schemathesis) validate responses against this document, so it says so.
"""

from __future__ import annotations

from typing import Any

from quart import Quart
from quart_schema.openapi import OpenAPIProvider
from werkzeug.routing import Rule

from app.server.errors import uses_anthropic_errors
from app.server.protocol import ErrorResponse
from app.server.protocol_messages import AnthropicError

ERROR_REF = "#/components/schemas/ErrorResponse"
ANTHROPIC_ERROR_REF = "#/components/schemas/AnthropicError"
STREAMING_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/responses"})
SSE_EVENT = {  # OpenAPI 3.1: for an event stream, ``schema`` describes one event
    "type": "object", "required": ["data"],
    "description": "When stream is true: one server-sent event per chunk.",
    "properties": {"data": {"type": "string", "description": "A chat.completion.chunk object as JSON "
                            "(or an error envelope), then the literal [DONE]; for /v1/responses a "
                            "Responses event (its type also in the event line), no [DONE]."},
                   "event": {"type": "string"}},
}
MESSAGES_SSE_EVENT = {
    "type": "object", "required": ["event", "data"],
    "description": "When stream is true: named server-sent events, message_start to message_stop.",
    "properties": {"event": {"type": "string", "description": "The event's type (message_start, "
                             "content_block_delta, message_stop, error ...)."},
                   "data": {"type": "string", "description": "The event object as JSON."}},
}
RETRY_AFTER = {"description": "Seconds to wait (503 queue full, 429 throttled).",
               "schema": {"type": "string"}}


class EnvelopeDocumentingProvider(OpenAPIProvider):
    """An OpenAPI provider that adds the error envelope (``default``) and SSE replies."""

    def build_paths(self, rule: Rule) -> tuple[dict, dict]:
        paths, components = super().build_paths(rule)
        components["ErrorResponse"] = ErrorResponse.model_json_schema(
            ref_template="#/components/schemas/{model}")
        components.update(components["ErrorResponse"].pop("$defs", {}))
        components["AnthropicError"] = AnthropicError.model_json_schema(
            ref_template="#/components/schemas/{model}")
        components.update(components["AnthropicError"].pop("$defs", {}))
        for path, operations in paths.items():
            anthropic = uses_anthropic_errors(path)
            for method, operation in operations.items():
                responses: dict[str, Any] = {str(k): v for k, v in (operation.get("responses") or {}).items()}
                responses.setdefault("default", {
                    "description": "An Anthropic-style error." if anthropic else "An OpenAI-style error.",
                    "headers": {"Retry-After": RETRY_AFTER},
                    "content": {"application/json": {"schema": {
                        "$ref": ANTHROPIC_ERROR_REF if anthropic else ERROR_REF}}},
                })
                ok = responses.get("200")
                if path in STREAMING_PATHS and method == "post" and ok is not None:
                    ok = {**ok, "content": {**ok.get("content", {}), "text/event-stream": {
                        "schema": MESSAGES_SSE_EVENT if anthropic else SSE_EVENT}}}
                    responses["200"] = ok
                operations[method] = {**operation, "responses": responses}
                if "requestBody" in operation:  # every body route refuses a request without one
                    operations[method]["requestBody"] = {**operation["requestBody"], "required": True}
        return paths, components


def document_envelopes(app: Quart) -> None:
    """Swap in :class:`EnvelopeDocumentingProvider` (after ``QuartSchema(app)``)."""
    extension = app.extensions.get("QUART_SCHEMA")
    if extension is not None:
        extension.openapi_provider = EnvelopeDocumentingProvider(app, extension)
