"""What the HTTP layer shares with the rest of the app (the same objects the tray uses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.keystore import KeyStore
from app.model_hub import ModelHub
from app.server.request_log import RequestLog
from app.server.response_store import ResponseStore
from app.settings import SettingsStore

if TYPE_CHECKING:
    from app.hydra.agent import HydraAgent


@dataclass
class ServerContext:
    """Settings, key, models and the request log; ``hydra`` is the agent when available."""

    settings: SettingsStore
    keys: KeyStore
    hub: ModelHub
    request_log: RequestLog = field(default_factory=lambda: RequestLog())
    hydra: HydraAgent | None = None
    responses: ResponseStore = field(init=False)
    """Stored Responses-API responses (``previous_response_id``), bounded by ``settings.responses``."""

    def __post_init__(self) -> None:
        self.responses = ResponseStore(lambda: self.settings.current.responses)
