"""Settings ▸ Server: port, LAN access, browser origins, routing, memory."""

from __future__ import annotations

import re
from typing import Any

from PySide6.QtWidgets import QCheckBox, QFormLayout, QLabel, QLineEdit, QPlainTextEdit, QWidget

from app.settings import Settings
from app.ui.actions import Controller
from app.ui.forms import Form, lines, parse_float, parse_int
from app.ui.pages.base import Page

ORIGIN_RE = re.compile(r"^[a-z][a-z0-9+.-]*://[^/\s?#]+$", re.IGNORECASE)
LAN_WARNING = ("Other computers and phones on your network will be able to reach the API "
               "(they still need the API key). Only turn this on for a network you trust.")


class ServerPage(Page):
    """Where and how the API listens."""

    title = "Server"
    key = "server"

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(controller, parent)
        layout = QFormLayout(self)
        self.form = Form(layout)
        self.port = QLineEdit()
        self.port.setObjectName("port")
        self.form.add("port", "Port", self.port, "Changing it restarts the listener.")
        self.allow_lan = QCheckBox("Allow other devices on my network")
        self.lan_warning = QLabel(LAN_WARNING)
        self.lan_warning.setWordWrap(True)
        self.lan_warning.setStyleSheet("color: #b26a00;")
        self.allow_lan.toggled.connect(self.lan_warning.setVisible)
        self.form.add("allow_lan", "Network", self.allow_lan)
        layout.addRow("", self.lan_warning)
        self.origins = QPlainTextEdit()
        self.origins.setPlaceholderText("one per line, e.g. http://localhost:3000")
        self.origins.setFixedHeight(80)
        self.form.add("allowed_origins", "Allowed browser origins", self.origins,
                      "Web pages from these origins may call the API (CORS). Leave empty for none.")
        self.always_active = QCheckBox("Answer any model name with the active model")
        self.form.add("always_use_active_model", "Routing", self.always_active,
                      "For apps whose model name cannot be changed. Off: an unknown name gets "
                      "404 model_not_found, as OpenAI answers. The mode (Direct or Hydra) applies "
                      "either way.")
        self.max_loaded = QLineEdit()
        self.form.add("max_loaded_models", "Models kept loaded", self.max_loaded)
        self.idle_minutes = QLineEdit()
        self.form.add("idle_unload_minutes", "Unload idle models after (minutes)", self.idle_minutes,
                      "0 keeps them loaded.")

    def load(self, settings: Settings) -> None:
        self.port.setText(str(settings.port))
        self.allow_lan.setChecked(settings.allow_lan)
        self.lan_warning.setVisible(settings.allow_lan)
        self.origins.setPlainText("\n".join(settings.limits.allowed_origins))
        self.always_active.setChecked(settings.always_use_active_model)
        self.max_loaded.setText(str(settings.memory.max_loaded_models))
        self.idle_minutes.setText(f"{settings.memory.idle_unload_minutes:g}")

    def apply(self, draft: dict[str, Any]) -> bool:
        assert self.form is not None
        self.form.clear_errors()
        ok = True
        try:
            draft["port"] = parse_int(self.port.text(), 1, 65535)
        except ValueError as exc:
            ok = self.form.fail("port", str(exc))
        draft["allow_lan"] = self.allow_lan.isChecked()
        origins = [o.rstrip("/") for o in lines(self.origins.toPlainText())]
        bad = [o for o in origins if o != "*" and not ORIGIN_RE.match(o)]
        if bad:
            ok = self.form.fail("allowed_origins", f"'{bad[0]}' is not an origin: use scheme://host[:port] "
                                     "with no path, e.g. http://localhost:3000 (or * for any).")
        else:
            draft.setdefault("limits", {})["allowed_origins"] = origins
        draft["always_use_active_model"] = self.always_active.isChecked()
        memory = draft.setdefault("memory", {})
        try:
            memory["max_loaded_models"] = parse_int(self.max_loaded.text(), 1, 64)
        except ValueError as exc:
            ok = self.form.fail("max_loaded_models", str(exc))
        try:
            memory["idle_unload_minutes"] = parse_float(self.idle_minutes.text(), 0)
        except ValueError as exc:
            ok = self.form.fail("idle_unload_minutes", str(exc))
        return ok

    def route_error(self, loc: tuple[str | int, ...], message: str) -> bool:
        assert self.form is not None
        name = str(loc[-1]) if loc else ""
        if loc and loc[0] in ("port", "allow_lan", "always_use_active_model", "limits", "memory"):
            return self.form.set_error(name, message)
        return False
