"""Wire the server's defences into an app: screening, live body limit, queues, honest OpenAPI."""

from __future__ import annotations

from quart import Quart, current_app

from app.providers.base import ChatModel
from app.server.context import ServerContext
from app.server.limits import install_live_body_limit
from app.server.openapi_docs import document_envelopes
from app.server.queueing import ModelQueues, Ticket
from app.server.security import install_security

QUEUES_KEY = "tater.queues"


def install_hardening(app: Quart, ctx: ServerContext) -> None:
    """Call in ``create_app`` before the auth gate is registered."""
    install_security(app, ctx)
    document_envelopes(app)
    install_live_body_limit(app, ctx)
    queues = ModelQueues(lambda: ctx.settings.current.limits.queue_depth)
    app.extensions[QUEUES_KEY] = queues


def model_queues() -> ModelQueues:
    """The running app's queues (inside a request)."""
    return current_app.extensions[QUEUES_KEY]


async def admit_request(model_id: str, model: ChatModel) -> Ticket:
    """A slot on ``model_id``'s queue for this request (503 when the queue is full)."""
    return await model_queues().admit(model_id, model)
