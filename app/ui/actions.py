"""What the tray and menu do: each user action as one method on :class:`Controller`.

The controller works on the shared services directly (never over HTTP).  Actions that may
fail tell the user through the notifier and return a bool, so tests can drive them too.
"""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget

from app.connect import Connection, recipes
from app.keystore import KeystoreUnavailable
from app.model_hub import HubEvent
from app.model_sources import SourceError, add_row, resolve_model_arg
from app.providers.base import ProviderError
from app.server.runner import ServerStartError
from app.services import Services
from app.settings import ModelRow, Settings
from app.ui import autostart, dialogs
from app.ui.bridge import ServiceBridge
from app.ui.notify import Notifier
from app.ui.state import TrayState, compute_state

log = logging.getLogger(__name__)


def copy_text(text: str) -> None:
    """Put ``text`` on the system clipboard."""
    QGuiApplication.clipboard().setText(text)


class Controller(QObject):
    """User actions on the shared services, plus the state they leave behind."""

    changed = Signal()  # something the tray/menu shows may have changed
    needs_model = Signal()  # the API is on and there is no model at all: offer some

    def __init__(self, services: Services, notifier: Notifier | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.services = services
        self.notifier = notifier or Notifier()
        self.bridge = ServiceBridge(services, self)
        self.failures: dict[str, str] = {}  # model id -> why its last load failed
        self.loading_since: dict[str, float] = {}  # model id -> monotonic start of its load
        self.bridge.hub_event.connect(self._on_hub_event)
        self.bridge.settings_changed.connect(self._on_settings_changed)
        self.bridge.request_logged.connect(self._on_request_logged)

    @property
    def load_error(self) -> str | None:
        """Why the active model failed to load, if it did."""
        active = self.services.settings.current.active_model
        return f"{active}: {self.failures[active]}" if active in self.failures else None

    def state(self) -> TrayState:
        """The tray state right now (see :func:`app.ui.state.compute_state`)."""
        return compute_state(self.services, self.failures, self.loading_since)

    # -- server -------------------------------------------------------------------------
    def start_server(self, host: str | None = None, port: int | None = None) -> bool:
        """Start the listener; a busy port becomes a notification and the error state."""
        try:
            self.services.start(host=host, port=port)
        except ServerStartError as exc:
            self.services.server.error = str(exc)
            self.notifier.show("The API server could not start", str(exc), "error")
            self.changed.emit()
            return False
        self.changed.emit()
        return True

    def _on_settings_changed(self, old: Settings, new: Settings) -> None:
        for model_id in list(self.failures):  # a changed or removed row may load now: forget why not
            if old.row(model_id) != new.row(model_id):
                del self.failures[model_id]
        moved = (old.bind_host, old.port) != (new.bind_host, new.port)
        if moved and not self.services.server.running:
            self.start_server()  # the user fixed the port after a failed start
        elif moved:
            QTimer.singleShot(1500, self._after_rebind)  # follow_settings rebinds on its own thread
        self.changed.emit()

    def _after_rebind(self) -> None:
        server = self.services.server
        if not server.running and server.error:
            self.notifier.show("The API server could not move", server.error, "error")
        self.changed.emit()

    # -- API on/off and the key ------------------------------------------------------------
    @property
    def api_enabled(self) -> bool:
        return self.services.settings.current.api_enabled

    def toggle_api(self) -> bool:
        """Flip the API (the tray's left click).  Returns the new state."""
        return self.set_api_enabled(not self.api_enabled)

    def set_api_enabled(self, enabled: bool) -> bool:
        """Enable or disable the API; the first enable creates and copies a key."""
        if enabled and not self._ensure_key():
            self.changed.emit()
            return self.api_enabled
        was = self.api_enabled
        self._save(api_enabled=enabled)
        if was and not self.api_enabled:
            self.notifier.show("API off", "Apps now get 404 from the Tater API. Click the tray icon "
                               "again (or Enable API in the menu) to turn it back on.")
        elif not was and self.api_enabled and not self.has_models:
            self.needs_model.emit()
        elif not was and self.api_enabled and not self.services.settings.current.active_model:
            self.notifier.show("API on, but no model", "Add a model (Model ▸ Add model…) so the API "
                               "can answer.", "warning")
        return self.api_enabled

    @property
    def has_models(self) -> bool:
        """Whether any model row is configured (none: the first-run offer applies)."""
        return bool(self.services.settings.current.models)

    def add_downloaded_row(self, row: ModelRow) -> None:
        """Save a row the Get models window produced; the first model becomes the active one."""
        try:
            chosen = add_row(self.services.settings, row)
        except ValueError as exc:
            self.notifier.show("Model not added", str(exc), "error")
            return
        active = self.services.settings.current.active_model == chosen.id
        self.notifier.show("Model added", f"{chosen.label} is ready"
                           + (" and answers the API now." if active else "."))
        self.changed.emit()

    def _ensure_key(self) -> bool:
        keys = self.services.keys
        if keys.status(fresh=True).key:
            return True
        try:
            key = keys.ensure()
        except KeystoreUnavailable as exc:
            self.notifier.show("No keyring for the API key", f"{exc} The API stays off until a key "
                               "can be stored safely.", "error")
            return False
        copy_text(key)
        self.notifier.show("API key created", "A new API key was stored in your keyring and copied "
                           "to the clipboard. Paste it into your app's API key field.")
        return True

    def copy_api_key(self) -> bool:
        """Copy the current key (creating none); tells the user when there is none."""
        st = self.services.keys.status(fresh=True)
        if not st.key:
            self.notifier.show("No API key yet", st.problem or "No API key is configured.", "warning")
            return False
        copy_text(st.key)
        self.notifier.show("API key copied", "The API key is on the clipboard.")
        return True

    def copy_base_url(self) -> None:
        """Copy ``http://host:port/v1``."""
        copy_text(self.services.server.base_url)
        self.notifier.show("Base URL copied", self.services.server.base_url)

    def connection(self) -> Connection | None:
        """The live base URL, key and model id for "Connect an app" (None, and the user told
        why, when there is no key yet)."""
        st = self.services.keys.status(fresh=True)
        if not st.key:
            self.notifier.show("No API key yet", "Turn the API on first (click the tray icon): that "
                               "creates the key the set-up needs.", "warning")
            return None
        return Connection(self.services.server.base_url, st.key, self.model_id_for_clients())

    def model_id_for_clients(self) -> str:
        """The active model's id, or the alias that always means the active model."""
        s = self.services.settings.current
        return s.active_model if s.row(s.active_model) else "tater/base"

    def copy_recipe(self, key: str) -> bool:
        """Copy one app's ready set-up (see :mod:`app.connect`) with the live key, port and model."""
        conn = self.connection()
        if conn is None:
            return False
        recipe = next(r for r in recipes(conn) if r.key == key)
        copy_text(recipe.text)
        self.notifier.show(f"{recipe.label} set-up copied", "Paste it where the app reads its settings "
                           "(it holds your API key: keep it private).")
        return True

    def copy_model_id(self) -> str:
        """Copy the id clients put in ``model``."""
        model = self.model_id_for_clients()
        copy_text(model)
        self.notifier.show("Model id copied", model)
        return model

    def regenerate_key(self, parent: QWidget | None = None) -> bool:
        """Ask, then replace the key; the old one stops working at once."""
        if not dialogs.confirm(parent, "Regenerate the API key?",
                               "Apps using the current key will get 401 errors until you give "
                               "them the new key. Continue?"):
            return False
        try:
            key = self.services.keys.rotate()
        except KeystoreUnavailable as exc:
            self.notifier.show("No keyring for the API key", str(exc), "error")
            return False
        copy_text(key)
        self.notifier.show("New API key copied", "The old key no longer works; the new one is on "
                           "the clipboard.")
        self.changed.emit()
        return True

    def set_api_key(self, key: str) -> None:
        """Store a key of the user's choosing.  Raises ValueError / KeystoreUnavailable."""
        self.services.keys.set(key)
        self.changed.emit()

    # -- mode and models --------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        """The mode of every request except those naming an alias (``tater/base``, ``tater/hydra``)."""
        self._save(mode=mode)

    def set_hydra_tools(self, allowed: bool) -> None:
        self._save(hydra_tools_allowed=allowed)

    def pick_model(self, model_id: str) -> None:
        """Make ``model_id`` the active model and start loading it."""
        self._save(active_model=model_id)
        self.preload(model_id)

    def preload(self, model_id: str) -> None:
        """Load in the background; a failure arrives as a hub event (and a notification)."""
        try:
            self.services.hub.load(model_id)
        except ProviderError as exc:
            self.notifier.show("Model not loaded", exc.message, "error")

    def unload_models(self) -> list[str]:
        """Unload every loaded model that is not generating."""
        done = [m for m in self.services.hub.loaded_ids() if self.services.hub.unload(m)]
        self.changed.emit()
        return done

    def add_model_path(self, path: str) -> str | None:
        """Add a GGUF file or model folder as a row, make it active; returns its id."""
        store = self.services.settings
        try:
            row = resolve_model_arg(path, store.current)
        except (SourceError, KeyError, ValueError) as exc:
            self.notifier.show("Cannot add this model", str(exc), "error")
            return None
        models = store.saved.models if store.saved.row(row.id) else [*store.saved.models, row]
        if not self._save(models=models):
            return None
        self.pick_model(row.id)
        return row.id

    def add_model_dialog(self, parent: QWidget | None = None) -> str | None:
        """Menu "Add model…": pick a GGUF file."""
        path = dialogs.pick_gguf_file(parent)
        return self.add_model_path(path) if path else None

    def _on_request_logged(self, _record: object) -> None:
        self.changed.emit()

    def _on_hub_event(self, event: HubEvent) -> None:
        """Track load state per model; a failure is told once, not on every request that retries."""
        if event.kind == "loading":
            self.loading_since[event.model_id] = time.monotonic()
        else:
            self.loading_since.pop(event.model_id, None)
        if event.kind == "failed":
            if self.failures.get(event.model_id) != event.message:
                self.notifier.show("A model failed to load", f"{event.model_id}: {event.message}",
                                   "error")
            self.failures[event.model_id] = event.message
        elif event.kind == "loaded":
            self.failures.pop(event.model_id, None)
        self.changed.emit()

    # -- start at login ---------------------------------------------------------------------
    def set_start_at_login(self, enabled: bool) -> bool:
        """Install or remove the platform's autostart entry and remember the choice."""
        try:
            autostart.set_enabled(enabled)
        except OSError as exc:
            self.notifier.show("Start at login", f"Could not change it: {exc}", "error")
            return False
        self._save(start_at_login=enabled)
        return True

    # -- helpers ----------------------------------------------------------------------------
    def _save(self, **changes: object) -> bool:
        try:
            self.services.settings.update(**changes)
        except ValueError as exc:
            self.notifier.show("Setting not saved", str(exc), "error")
            self.changed.emit()
            return False
        self.changed.emit()
        return True
