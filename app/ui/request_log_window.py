"""The request log: the last requests, live, with copy-as-curl (key never included)."""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app import APP_NAME
from app.keystore import redact
from app.server.request_log import RequestRecord
from app.ui.actions import Controller, copy_text

COLUMNS = ("Time", "Client", "Model", "Mode", "Status", "Tokens in", "Tokens out", "Tokens/s", "Latency")
MAX_ROWS = 500
Index = QModelIndex | QPersistentModelIndex


def cell(record: RequestRecord, column: int) -> str:
    """The text of one table cell."""
    if column == 0:
        return time.strftime("%H:%M:%S", time.localtime(record.started))
    values: tuple[Any, ...] = (
        None, record.client, record.model or "—", record.mode or "—", record.status,
        record.prompt_tokens, record.completion_tokens,
        f"{record.tokens_per_s:.1f}" if record.completion_tokens else "—",
        f"{record.latency_s * 1000:.0f} ms" if record.latency_s < 1 else f"{record.latency_s:.2f} s")
    return str(values[column])


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
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        bottom = QHBoxLayout()
        self.summary = QLabel()
        self.copy_button = QPushButton("Copy as curl")
        self.copy_button.clicked.connect(self.copy_selected_as_curl)
        bottom.addWidget(self.summary, 1)
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

    def _context_menu(self, pos: Any) -> None:
        index = self.table.indexAt(pos)
        if not index.isValid():
            return
        self.table.selectRow(index.row())
        menu = QMenu(self)
        menu.addAction("Copy as curl", self.copy_selected_as_curl)
        menu.exec(self.table.viewport().mapToGlobal(pos))
