"""``GET /v1/models``: the aliases, then every configured model row."""

from __future__ import annotations

import time

from quart import Blueprint
from quart_schema import document_response

from app.server.context_access import server_context
from app.server.errors import ApiError
from app.server.protocol import ModelCard, ModelList
from app.server.routing import LISTED_ALIASES

bp = Blueprint("models", __name__)
_STARTED = int(time.time())


def _cards() -> list[ModelCard]:
    settings = server_context().settings.current
    cards = [ModelCard(id=a, created=_STARTED, owned_by="tater") for a in LISTED_ALIASES]
    cards += [ModelCard(id=r.id, created=_STARTED, owned_by=r.provider) for r in settings.models]
    return cards


@bp.get("/v1/models")
@document_response(ModelList)
async def list_models() -> ModelList:
    """The aliases (tater/base, tater/direct, tater/hydra) and the configured models."""
    return ModelList(data=_cards())


@bp.get("/v1/models/<path:model_id>")
@document_response(ModelCard)
async def get_model(model_id: str) -> ModelCard:
    """One model by id."""
    for card in _cards():
        if card.id == model_id:
            return card
    raise ApiError(404, f"The model '{model_id}' does not exist.", code="model_not_found", param="model",
                       error_type="invalid_request_error")
