"""Servers already running on this machine (Ollama, LM Studio, …), offered in one click."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.settings import ModelRow
from app.ui.workers import run_in_background


def _discover(extra_ports: tuple[int, ...], skip_port: int | None) -> list[object]:
    from app.providers.discovery import discover_servers

    found = asyncio.run(discover_servers(extra_ports=extra_ports))
    return [s for s in found if s.port != skip_port]


class DiscoveryPanel(QGroupBox):
    """A "Find" button and a list of models from servers that answered; "Add" adds one row."""

    extra_ports: tuple[int, ...] = ()  # besides the usual ports (tests add a live server's)

    def __init__(self, add_row: Callable[[ModelRow], None], own_port: Callable[[], int | None],
                 parent: QWidget | None = None) -> None:
        super().__init__("Servers running on this machine", parent)
        self.add_row = add_row
        self.own_port = own_port
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.find_button = QPushButton("Find servers")
        self.find_button.clicked.connect(self.search)
        self.status = QLabel("Ollama, LM Studio, llama-server, Jan and vLLM on their usual ports.")
        self.status.setWordWrap(True)
        top.addWidget(self.find_button)
        top.addWidget(self.status, 1)
        layout.addLayout(top)
        self.results = QListWidget()
        self.results.setFixedHeight(90)
        self.results.itemDoubleClicked.connect(self._add_item)
        layout.addWidget(self.results)
        self.add_button = QPushButton("Add selected")
        self.add_button.clicked.connect(lambda: self._add_item(self.results.currentItem()))
        layout.addWidget(self.add_button)
        self.searching = False
        self.searched = False

    def search(self) -> None:
        """Probe the ports on a thread; results arrive on the Qt thread."""
        if self.searching:
            return
        self.searching = True
        self.find_button.setEnabled(False)
        self.status.setText("Looking…")
        ports, skip = tuple(self.extra_ports), self.own_port()
        run_in_background(lambda: _discover(ports, skip), self._found, self)

    def _found(self, servers: list[object] | None, error: BaseException | None) -> None:
        self.searching, self.searched = False, True
        self.find_button.setEnabled(True)
        self.results.clear()
        if error is not None:
            self.status.setText(f"Search failed: {error}")
            return
        count = 0
        for server in servers or []:
            if server.needs_api_key:  # type: ignore[attr-defined]
                item = QListWidgetItem(f"{server.name} at {server.base_url} wants an API key: "  # type: ignore[attr-defined]
                                       "use Add remote server…")
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
                self.results.addItem(item)
                continue
            for row in server.rows:  # type: ignore[attr-defined]
                item = QListWidgetItem(f"{row.source} — {server.name} at {server.base_url}")  # type: ignore[attr-defined]
                item.setData(Qt.ItemDataRole.UserRole, row)
                self.results.addItem(item)
                count += 1
        self.status.setText(f"Found {count} model{'s' if count != 1 else ''}. Double-click one to add it."
                            if count else "No running servers found.")

    def _add_item(self, item: QListWidgetItem | None) -> None:
        row = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        if isinstance(row, ModelRow):
            self.add_row(row)
