"""Which mode and which model a request runs on."""

from __future__ import annotations

from dataclasses import dataclass

from app.server.errors import ApiError
from app.settings import Settings

HYDRA_MODEL = "tater/hydra"  # the model name Hydra's replies carry
DIRECT_ALIASES = frozenset({"tater/base", "tater/direct", "tater-direct", "base", "direct"})
HYDRA_ALIASES = frozenset({HYDRA_MODEL, "tater-hydra", "hydra", "agent"})
LISTED_ALIASES = ("tater/base", "tater/direct", HYDRA_MODEL)


@dataclass(frozen=True)
class Route:
    """The resolved mode and model row id for a request."""

    mode: str  # "direct" | "hydra"
    model_id: str
    requested: str | None


def resolve(requested: str | None, settings: Settings) -> Route:
    """Aliases force a mode; a configured id selects that model; no model = the defaults."""
    name = (requested or "").strip()
    key = name.lower()
    if key in DIRECT_ALIASES:
        return Route("direct", _active(settings), name)
    if key in HYDRA_ALIASES:
        return Route("hydra", _active(settings), name)
    if not name:
        return Route(settings.mode, _active(settings), None)
    row = settings.row(name)
    if row is None:
        raise ApiError(404, f"The model '{name}' does not exist. Use one of the ids from GET /v1/models.",
                       code="model_not_found", param="model",
                       error_type="invalid_request_error")
    if settings.always_use_active_model:
        return Route("direct", _active(settings), name)
    return Route("direct", row.id, name)


def _active(settings: Settings) -> str:
    active = settings.active_model
    if not active or settings.row(active) is None:
        raise ApiError(503, "No model is selected. Pick one in the Tater tray menu (Model ▸ …) or start "
                       "the server with `tater serve --model PATH`.", code="no_active_model",
                       error_type="server_error")
    return active
