"""Get a model without leaving the app: recommended small models (one click each), models
already on disk, and Hub search and download; a token field for gated or private repositories.

The Qt face of :mod:`app.recommended_models`, :mod:`app.disk_models` and
:mod:`app.hub_downloads` (``tater models`` uses the same code).  Blocking work runs on worker
threads (:func:`app.ui.workers.run_in_background`, which also carries the download's progress
to the Qt thread), so workers never hold a widget.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.hub_downloads import Choice, DownloadCancelled, Progress, TokenNeeded, partial_bytes
from app.keystore import KeystoreUnavailable
from app.memory_estimate import human_bytes
from app.recommended_models import RECOMMENDED, RecommendedModel
from app.settings import ModelRow
from app.ui.workers import run_in_background

RUNTIME_LABELS = {"llama_cpp": "GGUF (llama.cpp)", "mlx_lm": "MLX", "hf_transformers": "Transformers"}




class GetModelsDialog(QDialog):
    """Recommended models and models on disk (one click each), and the Hub: search, choose a
    file, download.  ``add_row`` receives each new row; ``apply_hint`` says the caller saves it
    only on Apply (the Models page) rather than at once (the tray's first run)."""

    def __init__(self, add_row: Callable[[ModelRow], None], parent: QWidget | None = None, *,
                 apply_hint: bool = True) -> None:
        super().__init__(parent)
        self.setWindowTitle("Get models")
        self.add_row = add_row
        self.apply_hint = apply_hint
        self.cancel_event: threading.Event | None = None
        self.last_choice: Choice | None = None  # retried when a token is saved
        layout = QVBoxLayout(self)

        recommended = QGroupBox("Recommended small models (one click to download)")
        rec_layout = QVBoxLayout(recommended)
        self.recommended = QTableWidget(len(RECOMMENDED), 4)
        self.recommended.setHorizontalHeaderLabels(["Model", "Size", "Good at", ""])
        self.recommended.verticalHeader().setVisible(False)
        self.recommended.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.recommended_buttons: list[QPushButton] = []
        for row, model in enumerate(RECOMMENDED):
            for col, text in enumerate((model.name, f"about {human_bytes(model.size)}", model.good_at)):
                cell = QTableWidgetItem(text)
                cell.setToolTip(f"{model.repo_id} · {model.filename}" if col == 0 else text)
                self.recommended.setItem(row, col, cell)
            button = QPushButton("Download")
            button.clicked.connect(lambda _c=False, m=model: self.download_recommended(m))
            self.recommended.setCellWidget(row, 3, button)
            self.recommended_buttons.append(button)
        self.recommended.setWordWrap(True)
        self.recommended.resizeColumnsToContents()
        header = self.recommended.horizontalHeader()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)  # "Good at" wraps
        self.recommended.resizeRowsToContents()
        self.recommended.setMinimumHeight(  # every recommendation visible, no scrolling
            header.sizeHint().height() + 2 * self.recommended.frameWidth()
            + sum(self.recommended.rowHeight(r) for r in range(len(RECOMMENDED))))
        rec_layout.addWidget(self.recommended)
        layout.addWidget(recommended)

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
        self.hub_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        hub_layout.addWidget(self.hub_status)
        layout.addWidget(hub)

        self.token_box = QGroupBox("Hugging Face token (for gated or private models)")
        token_layout = QHBoxLayout(self.token_box)
        self.token_edit = QLineEdit()
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("hf_… (kept in the system keyring)")
        self.token_edit.returnPressed.connect(self.save_token)
        self.save_token_button = QPushButton("Save token and retry")
        self.save_token_button.clicked.connect(self.save_token)
        for w in (self.token_edit, self.save_token_button):
            token_layout.addWidget(w)
        self.token_box.setVisible(False)  # shown when a repository needs a token
        layout.addWidget(self.token_box)

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
            self._show_error(error)
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
            self._show_error(error)
            return
        for choice in choices or []:
            fits = "fits" if choice.fits else "too big for the free memory"
            have = partial_bytes(choice)
            partly = f" — {human_bytes(have)} already here: Download resumes" if have else ""
            item = QListWidgetItem(f"{choice.label} — {human_bytes(choice.size)} — {fits}{partly}")
            item.setData(Qt.ItemDataRole.UserRole, choice)
            self.choices.addItem(item)
        if self.choices.count():
            self.choices.setCurrentRow(0)
        self.hub_status.setText("Choose a file and press Download." if choices
                                else "Nothing here this app can run.")

    def download(self) -> None:
        """Download the chosen file (or folder) of the selected repository."""
        item = self.choices.currentItem()
        choice = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        if isinstance(choice, Choice):
            self.start_download(choice)

    def download_recommended(self, model: RecommendedModel) -> None:
        """One click: read the file's exact size and checksum from the Hub, then download it."""
        from app.recommended_models import choice_for

        if self.cancel_event is not None:
            return
        self._set_busy(True)
        self.hub_status.setText(f"Reading {model.repo_id}…")
        run_in_background(lambda: choice_for(model), self._recommended_ready, self)

    def _recommended_ready(self, choice: Choice | None, error: BaseException | None) -> None:
        self._set_busy(False)
        if error is not None or choice is None:
            self._show_error(error)
            return
        self.start_download(choice)

    def _set_busy(self, busy: bool) -> None:
        self.download_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        for button in self.recommended_buttons:
            button.setEnabled(not busy)

    def start_download(self, choice: Choice) -> None:
        """Download ``choice`` with progress; a partial file from before is resumed."""
        from app.hub_downloads import download

        if self.cancel_event is not None:
            return
        self.last_choice = choice
        cancel = threading.Event()
        self.cancel_event = cancel
        self._set_busy(True)
        self.hub_status.setText(f"Downloading {choice.label}…")

        def work(report: Callable[[Progress], None]) -> tuple[Choice, Any]:
            return choice, download(choice, cancel=cancel, on_progress=report)

        run_in_background(work, self._downloaded, self, on_progress=self._progress)

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

        self.cancel_event = None
        self._set_busy(False)
        if isinstance(error, DownloadCancelled):
            self.hub_status.setText("Cancelled; the partial file is kept: Download resumes it.")
            return
        if error is not None or result is None:
            self._show_error(error)
            return
        choice, path = result
        self.bar.setValue(1000)
        self.last_choice = None
        self.add_row(row_for_download(choice, path))
        hint = " (press Apply)" if self.apply_hint else ""
        self.hub_status.setText(f"Downloaded {choice.label}; added to the models{hint}.")

    def _show_error(self, error: BaseException | None) -> None:
        """Say what went wrong; a gated or private repository also shows the token field."""
        self.hub_status.setText(str(error) if error is not None else "Something went wrong.")
        if isinstance(error, TokenNeeded):
            self.token_box.setVisible(True)
            self.token_edit.setFocus()

    def save_token(self) -> None:
        """Keep the token in the keyring, then retry the download that needed it."""
        from app.hub_downloads import set_token

        token = self.token_edit.text().strip()
        if not token:
            self.hub_status.setText("Paste a token first (huggingface.co ▸ Settings ▸ Access Tokens).")
            return
        try:
            set_token(token)
        except KeystoreUnavailable as exc:
            self.hub_status.setText(f"The token was not saved: {exc}")
            return
        self.token_edit.clear()
        self.hub_status.setText("Token saved in the system keyring.")
        if self.last_choice is not None:
            self.start_download(self.last_choice)
        elif self.results.currentItem() is not None:
            self._list_choices(self.results.currentItem())

    def done(self, code: int) -> None:  # closing cancels a running download
        self.cancel()
        super().done(code)
