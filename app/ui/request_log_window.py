"""The request log: the last requests, live, a detail view per row, and copy-as-curl (key never included)."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app import APP_NAME
from app.keystore import redact
from app.server.request_log import RequestRecord
from app.ui.actions import Controller, copy_text

COLUMNS = ("Time", "App", "Endpoint", "Model", "Mode", "Status", "Tokens in", "Tokens out",
           "First token", "Decode tok/s", "Latency", "Error")
MAX_ROWS = 500
Index = QModelIndex | QPersistentModelIndex


def seconds(value: float | None) -> str:
    """``850 ms`` / ``2.41 s`` / ``—``."""
    if value is None:
        return "—"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def cell(record: RequestRecord, column: int) -> str:
    """The text of one table cell."""
    if column == 0:
        return time.strftime("%H:%M:%S", time.localtime(record.started))
    values: tuple[Any, ...] = (
        None, record.app or record.client, f"{record.method} {record.path}", record.model or "—",
        record.mode or "—", record.status, record.prompt_tokens, record.completion_tokens,
        seconds(record.ttft_s),
        f"{record.tokens_per_s:.1f}" if record.completion_tokens else "—",
        seconds(record.latency_s), record.error or "")
    return str(values[column])


def detail_text(record: RequestRecord) -> str:
    """Everything known about one request, as plain text (the key is never stored)."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.started))
    lines = [
        f"Time: {when}",
        f"Request: {record.method} {record.path}",
        f"Status: {record.status}" + (f" — {record.error}" if record.error else ""),
        f"App: {record.app or 'unknown'} (from {record.client or 'unknown address'})",
        f"Model: {record.model or '—'}" + (f" · mode: {record.mode}" if record.mode else ""),
        f"Tokens: {record.prompt_tokens} in, {record.completion_tokens} out"
        + (" (streamed)" if record.stream else ""),
        f"Time to first token: {seconds(record.ttft_s)}",
        f"Decode rate: {f'{record.tokens_per_s:.1f} tokens/s' if record.completion_tokens else '—'}",
        f"Latency: {seconds(record.latency_s)}",
    ]
    if record.headers:
        lines += ["", "Headers:"] + [f"  {k}: {v}" for k, v in record.headers.items()]
    if record.body:
        lines += ["", "Body:", record.body]
    return "\n".join(lines)


class RequestDetail(QDialog):
    """One request in full, with copy-as-curl."""

    def __init__(self, text: str, curl: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Request")
        self.resize(640, 480)
        layout = QVBoxLayout(self)
        self.text = QPlainTextEdit(text)
        self.text.setReadOnly(True)
        layout.addWidget(self.text)
        buttons = QHBoxLayout()
        copy = QPushButton("Copy as curl")
        copy.clicked.connect(lambda: copy_text(curl))
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        buttons.addStretch(1)
        buttons.addWidget(copy)
        buttons.addWidget(close)
        layout.addLayout(buttons)


class RequestTableModel(QAbstractTableModel):
    """Newest request first."""

    def __init__(self, records: list[RequestRecord] | None = None) -> None:
        super().__init__()
        self.records: list[RequestRecord] = list(reversed(records or []))[:MAX_ROWS]

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.records)

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        record = self.records[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return cell(record, index.column())
        if role == Qt.ItemDataRole.ForegroundRole and record.status >= 400:
            from PySide6.QtGui import QColor

            return QColor("#c62828")
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def add(self, record: RequestRecord) -> None:
        self.beginInsertRows(QModelIndex(), 0, 0)
        self.records.insert(0, record)
        self.endInsertRows()
        if len(self.records) > MAX_ROWS:
            self.beginRemoveRows(QModelIndex(), MAX_ROWS, len(self.records) - 1)
            del self.records[MAX_ROWS:]
            self.endRemoveRows()


class RequestLogWindow(QWidget):
    """A live table fed by the request log (through the Qt-thread bridge)."""

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.setWindowTitle(f"{APP_NAME} Request log")
        self.resize(900, 420)
        self.model = RequestTableModel(controller.services.request_log.records())
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        self.table.doubleClicked.connect(lambda _index: self.show_selected_detail())
        self.detail: RequestDetail | None = None
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        bottom = QHBoxLayout()
        self.summary = QLabel()
        self.copy_button = QPushButton("Copy as curl")
        self.copy_button.clicked.connect(self.copy_selected_as_curl)
        self.detail_button = QPushButton("Details…")
        self.detail_button.clicked.connect(self.show_selected_detail)
        bottom.addWidget(self.summary, 1)
        bottom.addWidget(self.detail_button)
        bottom.addWidget(self.copy_button)
        layout.addLayout(bottom)
        controller.bridge.request_logged.connect(self._on_record)
        self._update_summary()

    def _on_record(self, record: RequestRecord) -> None:
        self.model.add(record)
        self._update_summary()

    def _update_summary(self) -> None:
        log = self.controller.services.request_log
        self.summary.setText(f"{log.served} served since start · {log.in_flight} in flight")

    def selected_record(self) -> RequestRecord | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.records[rows[0].row()] if rows else None

    def curl_for(self, record: RequestRecord) -> str:
        """A curl command for ``record``; the key is a placeholder and redacted anywhere else."""
        text = record.as_curl(self.controller.services.server.base_url.removesuffix("/v1"))
        return redact(text, self.controller.services.keys.get())

    def copy_selected_as_curl(self) -> bool:
        record = self.selected_record()
        if record is None:
            return False
        copy_text(self.curl_for(record))
        return True

    def show_selected_detail(self) -> RequestDetail | None:
        """Open the selected request in full (double-click, Details…, or the context menu)."""
        record = self.selected_record()
        if record is None:
            return None
        key = self.controller.services.keys.get()
        if self.detail is not None:
            self.detail.close()
        self.detail = RequestDetail(redact(detail_text(record), key), self.curl_for(record), self)
        self.detail.show()
        return self.detail

    def _context_menu(self, pos: Any) -> None:
        index = self.table.indexAt(pos)
        if not index.isValid():
            return
        self.table.selectRow(index.row())
        menu = QMenu(self)
        menu.addAction("Details…", self.show_selected_detail)
        menu.addAction("Copy as curl", self.copy_selected_as_curl)
        menu.exec(self.table.viewport().mapToGlobal(pos))
