"""Add a remote OpenAI-compatible server: URL, key, Test connection, pick its models."""

from __future__ import annotations

from typing import Any

import httpx
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.providers.remote import RemoteProvider, host_port, normalize_base_url
from app.settings import ModelRow
from app.ui.forms import Form
from app.ui.workers import run_in_background


def fetch_models(base_url: str, api_key: str, timeout: float = 5.0) -> list[str]:
    """Model ids from ``GET {base_url}/models``; ValueError with a plain message on failure."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        resp = httpx.get(f"{base_url}/models", headers=headers, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise ValueError(f"Could not connect: {type(exc).__name__}: {exc}") from None
    if resp.status_code in (401, 403):
        raise ValueError(f"The server refused the API key (HTTP {resp.status_code}).")
    if resp.status_code != 200:
        raise ValueError(f"The server answered HTTP {resp.status_code} to GET /models.")
    try:
        data = resp.json()["data"]
        ids = [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
    except (ValueError, KeyError, TypeError):
        raise ValueError("The answer to GET /models is not an OpenAI model list.") from None
    if not ids:
        raise ValueError("The server lists no models.")
    return ids


class RemoteDialog(QDialog):
    """Collects a base URL, an optional key and the chosen upstream models."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add a remote server")
        layout = QVBoxLayout(self)
        form_layout = QFormLayout()
        layout.addLayout(form_layout)
        self.form = Form(form_layout)
        self.url = QLineEdit()
        self.url.setPlaceholderText("http://127.0.0.1:11434/v1")
        self.form.add("url", "Base URL", self.url)
        self.key = QLineEdit()
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setPlaceholderText("optional; kept in the keyring")
        self.form.add("key", "API key", self.key)
        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(self.test_connection)
        self.status = QLabel()
        self.status.setWordWrap(True)
        form_layout.addRow(self.test_button, self.status)
        self.models = QListWidget()
        self.models.setSelectionMode(QListWidget.SelectionMode.MultiSelection)
        self.form.add("models", "Models", self.models, "Test the connection, then pick one or more.")
        std = QDialogButtonBox.StandardButton
        buttons = QDialogButtonBox(std.Ok | std.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.base_url = ""
        self.testing = False

    def _normalized(self) -> str | None:
        try:
            url = normalize_base_url(self.url.text().strip())
        except ValueError as exc:
            self.form.set_error("url", str(exc))
            return None
        if not url.startswith(("http://", "https://")):
            self.form.set_error("url", "Use an http:// or https:// address.")
            return None
        return url

    def test_connection(self) -> None:
        """Ask the server for its models (on a thread); fills the list or shows why not."""
        self.form.clear_errors()
        url = self._normalized()
        if url is None:
            return
        self.testing = True
        self.test_button.setEnabled(False)
        self.status.setText("Connecting…")
        key = self.key.text().strip()
        run_in_background(lambda: fetch_models(url, key), lambda r, e: self._tested(url, r, e), self)

    def _tested(self, url: str, ids: list[str] | None, error: BaseException | None) -> None:
        self.testing = False
        self.test_button.setEnabled(True)
        self.models.clear()
        if error is not None or not ids:
            self.status.setText("")
            self.form.set_error("key" if "API key" in str(error) else "url", str(error))
            return
        self.base_url = url
        self.status.setText(f"Connected: {len(ids)} model{'s' if len(ids) != 1 else ''}.")
        for model in ids:
            self.models.addItem(QListWidgetItem(model))
        if len(ids) == 1:
            self.models.item(0).setSelected(True)

    def rows(self) -> list[ModelRow]:
        """Rows for the selected models, each named ``model @ host:port`` in the list."""
        chosen = [i.text() for i in self.models.selectedItems()]
        where = host_port(self.base_url)
        return [RemoteProvider.row_for(m, base_url=self.base_url, display_name=f"{m} @ {where}")
                for m in chosen]

    def accept(self) -> None:
        if not self.base_url:  # keep the failed test's message where it is, and say what to do
            failed = self.form.errors()
            self.form.set_error("models", "The connection test failed: fix the address or key above "
                                "and press Test connection again." if failed else
                                "Test the connection first.")
            return
        self.form.clear_errors()
        if not self.models.selectedItems():
            self.form.set_error("models", "Pick at least one model.")
            return
        super().accept()

    def result_data(self) -> dict[str, Any]:
        return {"rows": self.rows(), "api_key": self.key.text().strip()}

