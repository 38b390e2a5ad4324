"""``GET /v1/pools/{id}``: a pool row's members and their health (Tater's own, not OpenAI's)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ValidationError
from quart import Blueprint
from quart_schema import document_response

from app.providers.pool import PoolOptions, PoolProvider, pool_health
from app.server.context_access import server_context
from app.server.errors import ApiError

bp = Blueprint("pools", __name__)


class PoolMemberStatus(BaseModel):
    """One member: ``untried`` until the pool first sends it a request."""

    id: str
    state: Literal["healthy", "unhealthy", "untried"]
    in_flight: int
    served: int
    failures: int
    last_error: str
    retry_in_seconds: float


class PoolStatus(BaseModel):
    """A pool row's health; ``loaded`` is false (and every member untried) before its first use."""

    id: str
    object: Literal["tater.pool"] = "tater.pool"
    loaded: bool
    retry_seconds: float
    members: list[PoolMemberStatus]


@bp.get("/v1/pools/<path:pool_id>")
@document_response(PoolStatus)
async def get_pool(pool_id: str) -> PoolStatus:
    """A pool row's members: healthy or not, requests in flight and served, the last error."""
    ctx = server_context()
    row = ctx.settings.current.row(pool_id)
    if row is None or row.provider != PoolProvider.name:
        raise ApiError(404, f"There is no pool row '{pool_id}' (a pool row has provider 'pool').",
                       code="pool_not_found", param="pool_id")
    try:
        options = PoolOptions.model_validate(row.options)
    except ValidationError as exc:
        raise ApiError(409, f"The pool row '{pool_id}' has invalid options: {exc.errors()[0]['msg']}",
                       code="pool_invalid") from None
    health = pool_health(ctx.hub, pool_id)
    if health is None:
        members = [PoolMemberStatus(id=m, state="untried", in_flight=0, served=0, failures=0,
                                    last_error="", retry_in_seconds=0.0) for m in options.members]
    else:
        members = [PoolMemberStatus(id=h.member_id, state=h.state, in_flight=h.in_flight,
                                    served=h.served, failures=h.failures, last_error=h.last_error,
                                    retry_in_seconds=h.retry_in_seconds) for h in health]
    return PoolStatus(id=pool_id, loaded=health is not None, retry_seconds=options.retry_seconds,
                      members=members)
