"""Which mode and which model a request runs on.

The tray's mode decides Direct or Hydra for every request; only the aliases force a mode.  A
configured model id picks that model (in Hydra mode Hydra runs on it).  An unknown name is a 404
``model_not_found``, as OpenAI, Ollama and LM Studio answer, unless the user opted in to
"answer any model name with the active model" (for apps whose model name cannot be changed).
"""

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
    """Aliases force a mode; otherwise the tray's mode applies, on the named (or active) model."""
    name = (requested or "").strip()
    key = name.lower()
    if key in DIRECT_ALIASES:
        return Route("direct", _active(settings), name)
    if key in HYDRA_ALIASES:
        return Route("hydra", _active(settings), name)
    if not name:
        return Route(settings.mode, _active(settings), None)
    row = settings.row(name)
    if settings.always_use_active_model:
        return Route(settings.mode, _active(settings), name)
    if row is None:
        raise ApiError(404, f"The model '{name}' does not exist. Use one of the ids from GET /v1/models, "
                       "or turn on \"Answer any model name with the active model\" in Settings ▸ Server.",
                       code="model_not_found", param="model",
                       error_type="invalid_request_error")
    return Route(settings.mode, row.id, name)


def _active(settings: Settings) -> str:
    active = settings.active_model
    if not active or settings.row(active) is None:
        raise ApiError(503, "No model is selected. Pick one in the Tater tray menu (Model ▸ …) or start "
                       "the server with `tater serve --model PATH`.", code="no_active_model",
                       error_type="server_error")
    return active
