"""The running tray app: controller, icon, menu and windows wired together."""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QUrl
from PySide6.QtGui import QCursor, QDesktopServices, QIcon
from PySide6.QtWidgets import QMessageBox

from app import APP_NAME, __version__
from app.paths import log_dir
from app.resources import app_icon_path
from app.services import Services
from app.ui import desktop_integration
from app.ui.actions import Controller, copy_text
from app.ui.menu import TrayMenu
from app.ui.notify import Notifier
from app.ui.quitter import Quitter
from app.ui.tray import TrayIcon

log = logging.getLogger(__name__)


class TrayApp(QObject):
    """Everything the user sees; windows are created on first use."""

    def __init__(self, services: Services, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.services = services
        self.controller = Controller(services, Notifier(), self)
        self.quitter = Quitter(services, before=[self._before_quit])
        self.menu = TrayMenu(self.controller, open_settings=self.open_settings,
                             open_status=self.open_status,
                             open_request_log=self.open_request_log,
                             open_log_folder=self.open_log_folder, show_about=self.show_about,
                             quit_app=self.quitter.quit, open_get_models=self.open_get_models)
        self.tray = TrayIcon(self.controller, self.menu, self)
        self.settings_window = None
        self.request_log_window = None
        self.status_window = None
        self.get_models_dialog = None
        self.controller.needs_model.connect(self.offer_models)

    def start(self) -> None:
        """Show the icon, start the server (a busy port is reported, the app keeps running)."""
        self.tray.show()
        self.controller.start_server()
        try:
            desktop_integration.install()
        except OSError as exc:  # a read-only home must not stop the app
            log.warning("could not install the launcher and icon: %s", exc)
        for warning in self.services.settings.warnings:
            self.controller.notifier.show("Settings", warning, "warning")
        if self.controller.api_enabled and not self.controller.has_models:
            self.offer_models()

    def offer_models(self) -> None:
        """First run: say the API has no model, and open the window with recommended models."""
        self.controller.notifier.show(
            "No model yet", "The API is on but has no model to answer with. Pick a small "
            "recommended model to download (one click), or find one on the Hub.", "warning")
        self.open_get_models()

    def open_get_models(self) -> None:
        """The Get models window; its downloads are saved as rows at once (no Apply)."""
        from app.ui.pages.get_models_dialog import GetModelsDialog

        if self.get_models_dialog is None:  # made once and kept, as the other windows
            self.get_models_dialog = GetModelsDialog(self.controller.add_downloaded_row,
                                                     apply_hint=False)
        _raise(self.get_models_dialog)

    def handle_command(self, command: str) -> None:
        """A later launch asked us to show something."""
        if command == "settings":
            self.open_settings()
        elif command == "request-log":
            self.open_request_log()
        elif command == "status":
            self.open_status()
        else:
            self.menu.refresh()
            self.menu.popup(QCursor.pos())

    def open_settings(self, page: str | None = None) -> None:
        from app.ui.settings_window import SettingsWindow

        if self.settings_window is None:  # made once and kept: dropped Qt objects must not become
            self.settings_window = SettingsWindow(self.controller)  # garbage a worker thread frees
        elif not self.settings_window.isVisible():
            self.settings_window.reload()
        if page:
            self.settings_window.show_page(page)
        _raise(self.settings_window)

    def open_request_log(self) -> None:
        from app.ui.request_log_window import RequestLogWindow

        if self.request_log_window is None:
            self.request_log_window = RequestLogWindow(self.controller)
        _raise(self.request_log_window)

    def open_status(self) -> None:
        from app.ui.status_window import StatusWindow

        if self.status_window is None:
            self.status_window = StatusWindow(self.controller)
        _raise(self.status_window)

    def open_log_folder(self) -> bool:
        """Open the log folder in the file manager; without one, say where it is (path copied)."""
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        if QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            return True
        copy_text(str(folder))
        self.controller.notifier.show("No file manager to open the log folder",
                                      f"The logs are in {folder} (the path is on the clipboard).",
                                      "warning")
        return False

    def show_about(self) -> None:
        box = QMessageBox()
        box.setWindowTitle(f"About {APP_NAME}")
        box.setIconPixmap(QIcon(str(app_icon_path(64))).pixmap(64, 64))
        box.setText(f"<b>{APP_NAME}</b> {__version__}<br>A local OpenAI-compatible chat API in your tray."
                    f"<br>Base URL: {self.services.server.base_url}")
        box.exec()

    def _before_quit(self) -> None:
        self.tray.hide()
        for window in (self.settings_window, self.request_log_window, self.status_window,
                       self.get_models_dialog):
            if window is not None:
                window.close()
        self.controller.bridge.detach()


def _raise(window: object) -> None:
    window.show()  # type: ignore[attr-defined]
    window.raise_()  # type: ignore[attr-defined]
    window.activateWindow()  # type: ignore[attr-defined]
