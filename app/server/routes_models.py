"""``GET /v1/models``: the aliases, then every configured model row, each with whether it is
loaded and its context length (answered from the hub's memory: a row's context is read from its
files once, off the event loop, and never by loading it)."""

from __future__ import annotations

import asyncio
import time

from quart import Blueprint
from quart_schema import document_response

from app.model_hub import ModelState
from app.server.context_access import server_context
from app.server.errors import ApiError
from app.server.protocol import ModelCard, ModelList
from app.server.routing import LISTED_ALIASES

bp = Blueprint("models", __name__)
_STARTED = int(time.time())


def _card(model_id: str, owned_by: str, state: ModelState | None) -> ModelCard:
    context = state.context_length if state is not None else None
    loaded = state is not None and state.loaded
    return ModelCard(id=model_id, created=_STARTED, owned_by=owned_by,
                     state="loaded" if loaded else "not-loaded",
                     context_length=context, max_model_len=context)


async def _cards() -> list[ModelCard]:
    ctx = server_context()
    settings = ctx.settings.current
    rows = settings.models
    states = {r.id: ctx.hub.known_state(r) for r in rows}
    unknown = [r for r in rows if states[r.id] is None]
    if unknown:  # first sight of these rows: read their headers once, on a worker thread
        learnt = await asyncio.to_thread(lambda: [ctx.hub.state(r) for r in unknown])
        states.update({r.id: s for r, s in zip(unknown, learnt, strict=True)})
    active = states.get(settings.active_model or "")
    cards = [_card(a, "tater", active) for a in LISTED_ALIASES]
    cards += [_card(r.id, r.provider, states[r.id]) for r in rows]
    return cards


@bp.get("/v1/models")
@document_response(ModelList)
async def list_models() -> ModelList:
    """The aliases (tater/base, tater/direct, tater/hydra) and the configured models."""
    return ModelList(data=await _cards())


@bp.get("/v1/models/<path:model_id>")
@document_response(ModelCard)
async def get_model(model_id: str) -> ModelCard:
    """One model by id."""
    for card in await _cards():
        if card.id == model_id:
            return card
    raise ApiError(404, f"The model '{model_id}' does not exist.", code="model_not_found", param="model",
                       error_type="invalid_request_error")
