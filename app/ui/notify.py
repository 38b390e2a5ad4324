"""Notifications the user must see (through the tray icon's balloon/desktop notifications)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from PySide6.QtWidgets import QSystemTrayIcon

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notice:
    """One notification as shown."""

    title: str
    message: str
    level: str  # "info" | "warning" | "error"


_ICONS = {"info": QSystemTrayIcon.MessageIcon.Information,
          "warning": QSystemTrayIcon.MessageIcon.Warning,
          "error": QSystemTrayIcon.MessageIcon.Critical}


class Notifier:
    """Shows notifications on a tray icon (once it exists) and keeps the recent ones."""

    def __init__(self) -> None:
        self.tray: QSystemTrayIcon | None = None
        self.history: list[Notice] = []

    def show(self, title: str, message: str, level: str = "info", msecs: int = 8000) -> None:
        """Show a notification; it is logged too, so headless runs keep a trace."""
        notice = Notice(title, message, level)
        self.history.append(notice)
        del self.history[:-50]
        getattr(log, "warning" if level != "info" else "info")("%s: %s", title, message)
        if self.tray is not None and self.tray.isVisible():
            self.tray.showMessage(title, message, _ICONS.get(level, _ICONS["info"]), msecs)
