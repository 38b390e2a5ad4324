"""Get a model without leaving the app: models already on disk, and Hub search and download.

The Qt face of :mod:`app.disk_models` and :mod:`app.hub_downloads` (``tater models`` uses
the same code).  Blocking work runs on worker threads; download progress reaches the Qt thread
through one long-lived relay object, so workers never hold a widget.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.hub_downloads import Choice, DownloadCancelled, Progress
from app.memory_estimate import human_bytes
from app.settings import ModelRow
from app.ui.workers import run_in_background

RUNTIME_LABELS = {"llama_cpp": "GGUF (llama.cpp)", "mlx_lm": "MLX", "hf_transformers": "Transformers"}


class _ProgressRelay(QObject):
    """Lives in the Qt thread; download threads emit ``(token, Progress)`` on it."""

    progress = Signal(int, object)

    def __init__(self) -> None:
        super().__init__()
        self.listeners: dict[int, Callable[[Progress], None]] = {}
        self.tokens = itertools.count(1)
        self.progress.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    @Slot(int, object)
    def _deliver(self, token: int, progress: Progress) -> None:
        listener = self.listeners.get(token)
        if listener is not None:
            listener(progress)


_relay: _ProgressRelay | None = None


def _progress_relay() -> _ProgressRelay:
    global _relay
    if _relay is None:
        _relay = _ProgressRelay()
        app = QCoreApplication.instance()
        if app is not None:
            _relay.moveToThread(app.thread())
    return _relay


class GetModelsDialog(QDialog):
    """Models on disk (one click to add) and the Hub: search, choose a file, download."""

    def __init__(self, add_row: Callable[[ModelRow], None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Get models")
        self.add_row = add_row
        self.cancel_event: threading.Event | None = None
        self.token = 0
        layout = QVBoxLayout(self)

        disk = QGroupBox("Already on this computer (Ollama, LM Studio, Hugging Face cache)")
        disk_layout = QVBoxLayout(disk)
        self.disk_list = QListWidget()
        self.disk_list.itemDoubleClicked.connect(self._add_found)
        self.disk_status = QLabel()
        scan_row = QHBoxLayout()
        self.scan_button = QPushButton("Look")
        self.scan_button.clicked.connect(self.scan)
        self.add_found_button = QPushButton("Add selected")
        self.add_found_button.clicked.connect(lambda: self._add_found(self.disk_list.currentItem()))
        for w in (self.scan_button, self.add_found_button):
            scan_row.addWidget(w)
        scan_row.addWidget(self.disk_status, 1)
        disk_layout.addLayout(scan_row)
        disk_layout.addWidget(self.disk_list)
        layout.addWidget(disk)

        hub = QGroupBox("Download from Hugging Face")
        hub_layout = QVBoxLayout(hub)
        query_row = QHBoxLayout()
        self.query = QLineEdit()
        self.query.setPlaceholderText("e.g. qwen2.5 0.5b")
        self.query.returnPressed.connect(self.search)
        self.runtime = QComboBox()
        for name, label in RUNTIME_LABELS.items():
            self.runtime.addItem(label, name)
        self.search_button = QPushButton("Search")
        self.search_button.clicked.connect(self.search)
        for w in (self.query, self.runtime, self.search_button):
            query_row.addWidget(w)
        hub_layout.addLayout(query_row)
        self.results = QListWidget()
        self.results.currentItemChanged.connect(lambda item, _old: self._list_choices(item))
        self.choices = QListWidget()
        self.choices.currentItemChanged.connect(lambda _item, _old: self.bar.setValue(0))
        hub_layout.addWidget(self.results)
        hub_layout.addWidget(self.choices)
        action_row = QHBoxLayout()
        self.download_button = QPushButton("Download")
        self.download_button.clicked.connect(self.download)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        for w in (self.download_button, self.cancel_button, self.bar):
            action_row.addWidget(w)
        hub_layout.addLayout(action_row)
        self.hub_status = QLabel()
        self.hub_status.setWordWrap(True)
        hub_layout.addWidget(self.hub_status)
        layout.addWidget(hub)

    # -- on disk ---------------------------------------------------------------------------
    def scan(self) -> None:
        from app.disk_models import scan

        self.scan_button.setEnabled(False)
        self.disk_status.setText("Looking…")
        run_in_background(scan, self._scanned, self)

    def _scanned(self, found: list[Any] | None, error: BaseException | None) -> None:
        self.scan_button.setEnabled(True)
        self.disk_list.clear()
        if error is not None:
            self.disk_status.setText(f"Could not look: {error}")
            return
        for model in found or []:
            item = QListWidgetItem(f"{model.label} — {human_bytes(model.size)}")
            item.setData(Qt.ItemDataRole.UserRole, model)
            item.setToolTip(str(model.path))
            self.disk_list.addItem(item)
        self.disk_status.setText(f"{len(found or [])} found." if found else "Nothing found.")

    def _add_found(self, item: QListWidgetItem | None) -> None:
        from app.model_sources import row_for_found

        model = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        if model is not None:
            self.add_row(row_for_found(model))
            self.disk_status.setText(f"Added {model.name}.")

    # -- the Hub ---------------------------------------------------------------------------
    def search(self) -> None:
        from app.hub_downloads import search

        query, runtime = self.query.text().strip(), self.runtime.currentData()
        self.search_button.setEnabled(False)
        self.hub_status.setText("Searching…")
        run_in_background(lambda: search(query, runtime), self._searched, self)

    def _searched(self, hits: list[Any] | None, error: BaseException | None) -> None:
        self.search_button.setEnabled(True)
        self.results.clear()
        self.choices.clear()
        if error is not None:
            self.hub_status.setText(str(error))
            return
        for hit in hits or []:
            gated = " · gated (needs a token)" if hit.gated else ""
            item = QListWidgetItem(f"{hit.repo_id} — {hit.downloads} downloads{gated}")
            item.setData(Qt.ItemDataRole.UserRole, hit.repo_id)
            self.results.addItem(item)
        self.hub_status.setText(f"{len(hits or [])} repositories." if hits else "Nothing found.")

    def _list_choices(self, item: QListWidgetItem | None) -> None:
        from app.hub_downloads import list_choices

        repo = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        if not repo:
            return
        self.choices.clear()
        self.hub_status.setText(f"Reading {repo}…")
        run_in_background(lambda: list_choices(repo), self._choices_listed, self)

    def _choices_listed(self, choices: list[Choice] | None, error: BaseException | None) -> None:
        self.choices.clear()
        if error is not None:
            self.hub_status.setText(str(error))
            return
        for choice in choices or []:
            fits = "fits" if choice.fits else "too big for the free memory"
            item = QListWidgetItem(f"{choice.label} — {human_bytes(choice.size)} — {fits}")
            item.setData(Qt.ItemDataRole.UserRole, choice)
            self.choices.addItem(item)
        if self.choices.count():
            self.choices.setCurrentRow(0)
        self.hub_status.setText("Choose a file and press Download." if choices
                                else "Nothing here this app can run.")

    def download(self) -> None:
        from app.hub_downloads import download

        item = self.choices.currentItem()
        choice = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        if not isinstance(choice, Choice) or self.cancel_event is not None:
            return
        relay = _progress_relay()
        self.token = next(relay.tokens)
        relay.listeners[self.token] = self._progress
        token, cancel = self.token, threading.Event()
        self.cancel_event = cancel
        self.download_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.hub_status.setText(f"Downloading {choice.label}…")

        def work() -> tuple[Choice, Any]:
            path = download(choice, cancel=cancel,
                            on_progress=lambda p: relay.progress.emit(token, p))
            return choice, path

        run_in_background(work, self._downloaded, self)

    def _progress(self, p: Progress) -> None:
        if p.total:
            self.bar.setValue(min(1000, int(1000 * p.done / p.total)))
        left = f", {p.eta:.0f} s left" if p.eta is not None else ""
        total = f" of {human_bytes(p.total)}" if p.total else ""
        self.hub_status.setText(f"{human_bytes(p.done)}{total} at {human_bytes(p.speed)}/s{left}")

    def cancel(self) -> None:
        if self.cancel_event is not None:
            self.cancel_event.set()
            self.hub_status.setText("Cancelling…")

    def _downloaded(self, result: tuple[Choice, Any] | None, error: BaseException | None) -> None:
        from app.model_sources import row_for_download

        _progress_relay().listeners.pop(self.token, None)
        self.cancel_event = None
        self.download_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if isinstance(error, DownloadCancelled):
            self.hub_status.setText("Cancelled; the partial file is kept: Download resumes it.")
            return
        if error is not None or result is None:
            self.hub_status.setText(str(error))
            return
        choice, path = result
        self.bar.setValue(1000)
        self.add_row(row_for_download(choice, path))
        self.hub_status.setText(f"Downloaded {choice.label}; added to the models (press Apply).")

    def done(self, code: int) -> None:  # closing cancels a running download
        self.cancel()
        super().done(code)
