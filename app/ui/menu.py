"""The tray's context menu: status, API switch, key, connecting apps, mode, models, windows, quit."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMenu, QWidget

from app.connect import Connection, recipes
from app.ui import autostart
from app.ui.actions import Controller
from app.ui.state import status_line

CONNECT_LABELS = [(r.key, r.label) for r in recipes(Connection("", "", ""))]


class TrayMenu(QMenu):
    """Built once; :meth:`refresh` brings checks, labels and the model list up to date."""

    def __init__(self, controller: Controller, *, open_settings: Callable[[], None],
                 open_status: Callable[[], None],
                 open_request_log: Callable[[], None], open_log_folder: Callable[[], None],
                 show_about: Callable[[], None], quit_app: Callable[[], None],
                 open_get_models: Callable[[], None] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.open_get_models = open_get_models
        c = controller
        self.status_action = self.addAction("")
        self.status_action.setEnabled(False)
        self.status_window_action = self.addAction("Status and Try it…")
        self.status_window_action.triggered.connect(open_status)
        self.addSeparator()
        self.enable_action = self._check("Enable API", c.set_api_enabled)
        self.copy_key_action = self.addAction("Copy API key")
        self.copy_key_action.triggered.connect(lambda: c.copy_api_key())
        self.copy_url_action = self.addAction("Copy base URL")
        self.copy_url_action.triggered.connect(lambda: c.copy_base_url())
        self.copy_model_action = self.addAction("Copy model id")
        self.copy_model_action.triggered.connect(lambda: c.copy_model_id())
        self.connect_menu = self.addMenu("Connect an app")
        self.connect_actions: dict[str, QAction] = {}
        for key, label in CONNECT_LABELS:
            act = self.connect_menu.addAction(label)
            act.triggered.connect(lambda _checked=False, k=key: c.copy_recipe(k))
            self.connect_actions[key] = act
        self.regenerate_action = self.addAction("Regenerate API key…")
        self.regenerate_action.triggered.connect(lambda: c.regenerate_key())
        self.addSeparator()

        self.mode_menu = self.addMenu("Mode")
        self.mode_group = QActionGroup(self)
        self.mode_actions: dict[str, QAction] = {}
        for mode, label in (("direct", "Direct"), ("hydra", "Hydra (agent)")):
            act = self.mode_menu.addAction(label)
            act.setCheckable(True)
            act.setData(mode)
            self.mode_group.addAction(act)
            act.triggered.connect(lambda _checked=False, m=mode: c.set_mode(m))
            self.mode_actions[mode] = act
        self.hydra_tools_action = self._check("Allow Hydra tools", c.set_hydra_tools)

        self.model_menu = self.addMenu("Model")
        self.model_group = QActionGroup(self)
        self.model_actions: dict[str, QAction] = {}
        self._models_key: tuple[object, ...] | None = None
        self.addSeparator()
        self.settings_action = self.addAction("Settings…")
        self.settings_action.triggered.connect(open_settings)
        self.request_log_action = self.addAction("Request log…")
        self.request_log_action.triggered.connect(open_request_log)
        self.autostart_action = self._check("Start at login", c.set_start_at_login)
        self.log_folder_action = self.addAction("Open log folder")
        self.log_folder_action.triggered.connect(open_log_folder)
        self.about_action = self.addAction("About Tater Desktop")
        self.about_action.triggered.connect(show_about)
        self.addSeparator()
        self.quit_action = self.addAction("Quit")
        self.quit_action.triggered.connect(quit_app)

        self.aboutToShow.connect(self.refresh)
        c.changed.connect(self.refresh)
        self.refresh()

    def _check(self, text: str, handler: Callable[[bool], object]) -> QAction:
        act = self.addAction(text)
        act.setCheckable(True)
        act.triggered.connect(lambda checked: handler(bool(checked)))
        return act

    def refresh(self) -> None:
        """Re-read everything the menu shows."""
        services = self.controller.services
        s = services.settings.current
        self.status_action.setText(status_line(services, self.controller.state()))
        self.enable_action.setChecked(s.api_enabled)
        self.mode_actions[s.mode].setChecked(True)
        self.hydra_tools_action.setChecked(s.hydra_tools_allowed)
        self.autostart_action.setChecked(s.start_at_login or autostart.is_enabled())
        self._rebuild_models()

    def _rebuild_models(self) -> None:
        s = self.controller.services.settings.current
        hub = self.controller.services.hub
        loaded, loading = set(hub.loaded_ids()), set(hub.loading_ids())
        key = (tuple((r.id, r.label) for r in s.models), tuple(sorted(loaded)), tuple(sorted(loading)))
        if key == self._models_key:
            for mid, act in self.model_actions.items():
                act.setChecked(mid == s.active_model)
            return
        self._models_key = key
        for act in self.model_menu.actions():  # deleteLater: one of them may be firing right now
            self.model_menu.removeAction(act)
            self.model_group.removeAction(act)
            act.deleteLater()
        self.model_actions = {}
        if not s.models:
            empty = self.model_menu.addAction("No models yet")
            empty.setEnabled(False)
        for row in s.models:
            mark = " (loaded)" if row.id in loaded else " (loading…)" if row.id in loading else ""
            act = self.model_menu.addAction(row.label + mark)
            act.setCheckable(True)
            act.setData(row.id)
            act.setChecked(row.id == s.active_model)
            act.setToolTip(f"{row.id} · {row.provider}")
            self.model_group.addAction(act)
            act.triggered.connect(lambda _checked=False, mid=row.id: self.controller.pick_model(mid))
            self.model_actions[row.id] = act
        self.model_menu.addSeparator()
        if self.open_get_models is not None:
            get = self.model_menu.addAction("Get models…")
            get.setToolTip("Recommended small models, models already on disk, Hugging Face search")
            get.triggered.connect(lambda: self.open_get_models())  # type: ignore[misc]
        add = self.model_menu.addAction("Add model…")
        add.triggered.connect(lambda: self.controller.add_model_dialog())
        unload = self.model_menu.addAction("Unload")
        unload.setEnabled(bool(loaded))
        unload.triggered.connect(lambda: self.controller.unload_models())
