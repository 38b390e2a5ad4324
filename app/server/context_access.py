"""Reach the shared :class:`ServerContext` from inside a request."""

from __future__ import annotations

from quart import current_app

from app.server.context import ServerContext


def server_context() -> ServerContext:
    return current_app.extensions["tater"]
