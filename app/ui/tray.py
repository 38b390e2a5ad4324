"""The tray icon: state icons, tooltip; a left click opens the status window (or toggles the API)."""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from app.resources import TRAY_SIZES, TRAY_STATES, tray_icon_path
from app.ui.actions import Controller
from app.ui.state import TrayState, compute_state, tooltip

POLL_MS = 500  # "generating" has no event of its own: look twice a second


def load_state_icons() -> dict[str, QIcon]:
    """One multi-size QIcon per tray state, from resources/icons/tray."""
    icons: dict[str, QIcon] = {}
    for state in TRAY_STATES:
        icon = QIcon()
        for size in TRAY_SIZES:
            icon.addFile(str(tray_icon_path(state, size)))
        icons[state] = icon
    return icons


class TrayIcon(QObject):
    """Owns the QSystemTrayIcon and keeps its icon and tooltip in step with the services."""

    def __init__(self, controller: Controller, menu: QMenu, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.icons = load_state_icons()
        self.icon = QSystemTrayIcon(self.icons["off"], self)
        self.icon.setContextMenu(menu)
        self.icon.activated.connect(self._on_activated)
        controller.notifier.tray = self.icon
        controller.changed.connect(self.refresh)
        self.state: TrayState = compute_state(controller.services)
        self.shown_icon = "off"  # the icon actually set, which may differ from the first state
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.refresh)
        self.refresh()

    def show(self) -> None:
        self.icon.show()
        self._timer.start()

    def hide(self) -> None:
        self._timer.stop()
        self.icon.hide()

    def refresh(self) -> None:
        """Recompute the state; swap icon and tooltip only when they change."""
        state = self.controller.state()
        text = tooltip(self.controller.services, state)
        if state.name != self.shown_icon or self.icon.icon().isNull():
            self.icon.setIcon(self.icons[state.name])
            self.shown_icon = state.name
        if self.icon.toolTip() != text:
            self.icon.setToolTip(text)
        self.state = state

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.controller.toggle_api()
            self.refresh()
