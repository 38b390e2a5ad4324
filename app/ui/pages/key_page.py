"""Settings ▸ API key: show (masked, reveal on click), copy, regenerate, set your own."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QWidget

from app.keystore import KeystoreUnavailable
from app.settings import Settings
from app.ui.actions import Controller
from app.ui.forms import Form
from app.ui.pages.base import Page


def key_problem(text: str) -> str | None:
    """Why ``text`` cannot be an API key (mirrors KeyStore.set), or None."""
    key = text.strip()
    if len(key) < 16:
        return "A key needs at least 16 characters."
    if not key.isprintable() or any(c.isspace() for c in key):
        return "A key must be printable characters with no spaces."
    return None


class KeyPage(Page):
    """The one API key clients send as ``Authorization: Bearer …``."""

    title = "API key"
    key = "key"

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(controller, parent)
        self.form = Form(QFormLayout(self))
        row = QWidget()
        h = QHBoxLayout(row)
        h.setContentsMargins(0, 0, 0, 0)
        self.current = QLineEdit()
        self.current.setObjectName("current-key")
        self.current.setReadOnly(True)
        self.current.setEchoMode(QLineEdit.EchoMode.Password)
        self.reveal = QPushButton("Show")
        self.reveal.setCheckable(True)
        self.reveal.toggled.connect(self._toggle_reveal)
        self.copy = QPushButton("Copy")
        self.copy.clicked.connect(lambda: controller.copy_api_key())
        self.regenerate = QPushButton("Regenerate…")
        self.regenerate.clicked.connect(self._regenerate)
        for w in (self.current, self.reveal, self.copy, self.regenerate):
            h.addWidget(w)
        self.form.add("current", "Current key", row)
        self.source = QLabel()
        self.source.setWordWrap(True)
        self.form.layout.addRow("", self.source)
        self.own = QLineEdit()
        self.own.setObjectName("own-key")
        self.own.setEchoMode(QLineEdit.EchoMode.Password)
        self.own.setPlaceholderText("leave empty to keep the current key")
        self.form.add("own", "Set your own key", self.own,
                      "At least 16 characters, no spaces. It replaces the current key when you press OK.")
        self.pending: str | None = None

    def load(self, settings: Settings) -> None:
        self.refresh_key()

    def refresh_key(self) -> None:
        st = self.controller.services.keys.status(fresh=True)
        self.current.setText(st.key or "")
        self.copy.setEnabled(bool(st.key))
        if st.key:
            where = "your OS keyring" if st.source == "keyring" else "the TATER_OPENAI_API_KEY variable"
            self.source.setText(f"Stored in {where}.")
        else:
            self.source.setText(st.problem or "No key yet.")

    def _toggle_reveal(self, shown: bool) -> None:
        self.current.setEchoMode(QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password)
        self.reveal.setText("Hide" if shown else "Show")

    def _regenerate(self) -> None:
        if self.controller.regenerate_key(self):
            self.refresh_key()

    def apply(self, draft: dict[str, Any]) -> bool:
        assert self.form is not None
        self.form.clear_errors()
        text = self.own.text().strip()
        self.pending = None
        if not text:
            return True
        problem = key_problem(text)
        if problem:
            return self.form.fail("own", problem)
        self.pending = text
        return True

    def commit(self) -> list[str]:
        if not self.pending:
            return []
        try:
            self.controller.set_api_key(self.pending)
        except (KeystoreUnavailable, ValueError) as exc:
            assert self.form is not None
            self.form.set_error("own", str(exc))
            return [f"The new API key was not stored: {exc}"]
        finally:
            self.pending = None
        self.own.clear()
        self.refresh_key()
        return []
