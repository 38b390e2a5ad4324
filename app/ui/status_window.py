"""The status window: is the API on and where, which model answers in which mode, what is loaded,
what is being asked and by whom, and a "Try it" box that sends one message through the real API."""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import Any

import httpx
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app import APP_NAME, __version__
from app.memory_estimate import estimate_row
from app.server.request_log import RequestRecord
from app.settings import ModelRow
from app.ui.actions import Controller
from app.ui.state import current_model_label, mode_label
from app.ui.workers import run_in_background

REFRESH_MS = 1000
RECENT = 5
TRY_IT_USER_AGENT = f"Tater-Desktop/{__version__} (Try it)"


def size_on_disk(source: str) -> int | None:
    """Bytes of a model file or folder (the weights a local model holds in memory), else None."""
    path = Path(source)
    try:
        if path.is_file():
            return path.stat().st_size
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return None
    return None


def human_bytes(n: int) -> str:
    """``512 KB``, ``4.2 GB``."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit in ("B", "KB") else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"  # pragma: no cover - the loop always returns


def record_line(r: RequestRecord) -> str:
    """One recent request in words."""
    when = time.strftime("%H:%M:%S", time.localtime(r.started))
    rate = f" · {r.tokens_per_s:.1f} tok/s" if r.completion_tokens else ""
    why = f" · {r.error}" if r.error else ""
    return f"{when} {r.app or r.client} {r.method} {r.path} → {r.status} · {r.model or '—'}{rate}{why}"


def try_it(base_url: str, key: str, model: str, message: str, timeout: float = 300.0) -> str:
    """Send ``message`` to the real API (as any app would) and return the answer's text.
    Raises ValueError with the API's own error message."""
    resp = httpx.post(f"{base_url}/chat/completions", timeout=timeout,
                      headers={"Authorization": f"Bearer {key}", "User-Agent": TRY_IT_USER_AGENT},
                      json={"model": model, "messages": [{"role": "user", "content": message}],
                            "max_tokens": 256})
    try:
        data = resp.json()
    except ValueError:
        raise ValueError(f"HTTP {resp.status_code}: {resp.text[:300]}") from None
    if resp.status_code != 200:
        err = data.get("error") if isinstance(data, dict) else None
        msg = err.get("message") if isinstance(err, dict) else resp.text[:300]
        raise ValueError(f"HTTP {resp.status_code}: {msg}")
    return str(data["choices"][0]["message"].get("content") or "")


class StatusWindow(QWidget):
    """Live status (refreshed every second while shown) and Try it."""

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self._footprints: dict[str, str] = {}
        """The loaded models' footprints, by row (with its options) as JSON."""
        self.setWindowTitle(f"{APP_NAME} Status")
        self.resize(620, 560)
        layout = QVBoxLayout(self)

        top = QHBoxLayout()
        self.api_label = QLabel()
        self.api_label.setWordWrap(True)
        self.api_button = QPushButton()
        self.api_button.clicked.connect(self.toggle_api)
        top.addWidget(self.api_label, 1)
        top.addWidget(self.api_button)
        layout.addLayout(top)

        box = QGroupBox("Now")
        form = QFormLayout(box)
        self.state_label, self.model_label, self.mode_label = QLabel(), QLabel(), QLabel()
        self.loaded_label, self.requests_label, self.rate_label = QLabel(), QLabel(), QLabel()
        self.apps_label = QLabel()
        for label, widget in (("State", self.state_label), ("Active model", self.model_label),
                              ("Mode", self.mode_label), ("Loaded", self.loaded_label),
                              ("Requests", self.requests_label), ("Tokens/s", self.rate_label),
                              ("Apps calling", self.apps_label)):
            widget.setWordWrap(True)
            form.addRow(label, widget)
        layout.addWidget(box)
        recent_box = QGroupBox("Recent requests")
        recent_layout = QVBoxLayout(recent_box)
        self.recent_label = QLabel()
        self.recent_label.setWordWrap(True)
        recent_layout.addWidget(self.recent_label)
        layout.addWidget(recent_box)

        try_box = QGroupBox("Try it: one message to the active model, through the API")
        try_layout = QVBoxLayout(try_box)
        row = QHBoxLayout()
        self.message_edit = QLineEdit("Hello! Who are you?")
        self.message_edit.returnPressed.connect(self.send)
        self.send_button = QPushButton("Send")
        self.send_button.clicked.connect(self.send)
        row.addWidget(self.message_edit, 1)
        row.addWidget(self.send_button)
        try_layout.addLayout(row)
        self.answer = QPlainTextEdit()
        self.answer.setReadOnly(True)
        self.answer.setPlaceholderText("The model's answer appears here.")
        try_layout.addWidget(self.answer)
        layout.addWidget(try_box, 1)

        self.sending = False
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        controller.changed.connect(self.refresh)
        self.refresh()

    def showEvent(self, event: Any) -> None:
        self.refresh()
        self._timer.start()
        super().showEvent(event)

    def hideEvent(self, event: Any) -> None:
        self._timer.stop()
        super().hideEvent(event)

    def toggle_api(self) -> None:
        """One click, as in the menu."""
        self.controller.toggle_api()
        self.refresh()

    def refresh(self) -> None:
        """Re-read everything shown."""
        services = self.controller.services
        state = self.controller.state()
        on = services.settings.current.api_enabled
        url = services.server.base_url if services.server.running else "not listening"
        self.api_label.setText(f"<b>API {'on' if on else 'off'}</b> · {url}")
        self.api_button.setText("Turn API off" if on else "Turn API on")
        self.state_label.setText(f"{state.text}" + (f" — {state.detail}" if state.detail else ""))
        self.model_label.setText(f"{current_model_label(services)} "
                                 f"(<code>{self.controller.model_id_for_clients()}</code>)")
        self.mode_label.setText(f"{mode_label(services)} (aliases tater/base and tater/hydra "
                                "force a mode)")
        self.loaded_label.setText(self._loaded_text())
        log = services.request_log
        records = log.records()
        self.requests_label.setText(f"{log.in_flight} in flight · {log.served} served since start")
        rates = [r.tokens_per_s for r in records if r.completion_tokens][-RECENT:]
        self.rate_label.setText(f"{rates[-1]:.1f} (last) · {sum(rates) / len(rates):.1f} "
                                f"(mean of the last {len(rates)})" if rates else "—")
        apps = collections.Counter(r.app or r.client for r in records)
        self.apps_label.setText(", ".join(f"{a} ({n})" for a, n in apps.most_common(6)) or "none yet")
        self.recent_label.setText("\n".join(record_line(r) for r in reversed(records[-RECENT:]))
                                  or "No requests yet.")

    def _loaded_text(self) -> str:
        services = self.controller.services
        s = services.settings.current
        parts = []
        for model_id in services.hub.loaded_ids():
            row = s.row(model_id)
            parts.append(f"{row.label if row else model_id} ({self._footprint(row)})")
        for model_id in services.hub.loading_ids():
            since = self.controller.loading_since.get(model_id)
            parts.append(f"{model_id}: loading… {time.monotonic() - since:.0f} s" if since else
                         f"{model_id}: loading…")
        return "\n".join(parts) or "no model in memory"

    def _footprint(self, row: ModelRow | None) -> str:
        """``≈ 1.2 GiB (weights … + KV cache … x 4 slots + compute …)``: the memory estimate,
        read once per row and options; a model without one shows its size on disk."""
        if row is None:
            return "remote"
        key = row.model_dump_json()
        if key not in self._footprints:
            estimate = estimate_row(row)
            size = size_on_disk(row.source)
            self._footprints[key] = (f"≈ {estimate.describe()}" if estimate is not None else
                                     f"≈ {human_bytes(size)} of weights" if size else "remote")
        return self._footprints[key]

    def send(self) -> None:
        """Send the message through the real API on a worker thread."""
        message = self.message_edit.text().strip()
        if not message or self.sending:
            return
        conn = self.controller.connection()
        if conn is None:
            self.answer.setPlainText("There is no API key yet: turn the API on first.")
            return
        if not self.controller.services.settings.current.api_enabled:
            self.answer.setPlainText("The API is off: press \"Turn API on\" first.")
            return
        self.sending = True
        self.send_button.setEnabled(False)
        self.answer.setPlainText(f"Asking {conn.model}…")
        run_in_background(lambda: try_it(conn.base_url, conn.api_key, conn.model, message),
                          self._answered, self)

    def _answered(self, text: str | None, error: BaseException | None) -> None:
        self.sending = False
        self.send_button.setEnabled(True)
        if error is not None:
            self.answer.setPlainText(f"Failed: {error}")
        else:
            self.answer.setPlainText(text or "(an empty answer)")
        self.refresh()
