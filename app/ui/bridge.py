"""Carry events from the server and loader threads onto the Qt thread.

Hub, request-log and settings listeners run on whatever thread raised them; emitting a Qt
signal from there queues the call to the receiver's (GUI) thread.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from app.services import Services


class ServiceBridge(QObject):
    """Qt signals mirroring the listeners of the shared services."""

    hub_event = Signal(object)  # app.model_hub.HubEvent
    request_logged = Signal(object)  # app.server.request_log.RequestRecord
    settings_changed = Signal(object, object)  # (old, new) Settings

    def __init__(self, services: Services, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._unsubscribe: list[Callable[[], None]] = [
            services.hub.subscribe(self.hub_event.emit),
            services.request_log.subscribe(self.request_logged.emit),
            services.settings.subscribe(self.settings_changed.emit),
        ]

    def detach(self) -> None:
        """Stop listening (at shutdown)."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
