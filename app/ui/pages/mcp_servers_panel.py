"""Settings ▸ Hydra ▸ MCP: Tater's own /mcp switch and the MCP servers Hydra may use.

Lists each server with its kind, state and tools; imports an ``mcpServers`` JSON file (as
Claude Desktop writes it), removes servers, and starts a server to (re)list its tools.  Like
every page, nothing is written before OK/Apply; secret header and variable values go to the
keyring then.  A server's tools appear as Verbas (off until enabled) once it has run once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.keystore import KeystoreUnavailable, SecretStore
from app.mcp.config import ImportProblem, McpServerConfig, parse_mcp_servers_json
from app.settings import Settings
from app.ui.forms import ERROR_STYLE
from app.ui.workers import run_in_background

log = logging.getLogger(__name__)

COLUMNS = ("Server", "Runs", "State", "Tools")


class McpServersPanel(QGroupBox):
    """The MCP group of the Hydra page."""

    def __init__(self, clients: Any | None, secrets: SecretStore,
                 parent: QWidget | None = None) -> None:
        super().__init__("MCP (Model Context Protocol)", parent)
        self.clients = clients  # app.mcp.clients.McpClients of the running Hydra, if any
        self.secrets = secrets
        self.servers: list[McpServerConfig] = []
        self.pending_secrets: dict[str, str] = {}
        self.states: dict[str, Any] = {}
        layout = QVBoxLayout(self)
        self.serve = QCheckBox("Serve the enabled Verbas to MCP clients at /mcp "
                               "(same API key as the rest of the API)")
        self.serve.setObjectName("mcp-serve")
        layout.addWidget(self.serve)
        layout.addWidget(QLabel("MCP servers whose tools Hydra may use (each tool is a Verba, "
                                "off until you enable it below once the server has run):"))
        self.table = QTreeWidget()
        self.table.setObjectName("mcp-servers")
        self.table.setHeaderLabels(list(COLUMNS))
        self.table.setRootIsDecorated(False)
        self.table.setMinimumHeight(110)
        layout.addWidget(self.table)
        buttons = QHBoxLayout()
        self.import_button = QPushButton("Import mcpServers JSON…")
        self.import_button.clicked.connect(self._choose_file)
        self.refresh_button = QPushButton("Start and list tools")
        self.refresh_button.clicked.connect(self.refresh_selected)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_selected)
        for b in (self.import_button, self.refresh_button, self.remove_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.message = QLabel()
        self.message.setWordWrap(True)
        layout.addWidget(self.message)

    # -- page protocol -----------------------------------------------------------------
    def load(self, settings: Settings) -> None:
        self.serve.setChecked(settings.mcp.server_enabled)
        self.servers = list(settings.mcp.servers)
        self.pending_secrets = {}
        self.message.clear()
        if self.clients is not None:
            self.states = {s.name: s for s in self.clients.states()}
            self.clients.verbas()  # (re)check the known tools, so their problems are current
            if self.clients.problems:
                self._say("Tools Hydra cannot use: " + "; ".join(
                    f"{where}: {why}" for where, why in sorted(self.clients.problems.items())),
                    error=True)
        self._fill()

    def apply(self, draft: dict[str, Any]) -> None:
        mcp = dict(draft.get("mcp", {}))
        mcp["server_enabled"] = self.serve.isChecked()
        mcp["servers"] = [s.model_dump(mode="json") for s in self.servers]
        draft["mcp"] = mcp

    def commit(self) -> list[str]:
        problems = []
        for entry, value in self.pending_secrets.items():
            try:
                self.secrets.set(entry, value)
            except KeystoreUnavailable as exc:
                problems.append(f"An MCP secret ({entry}) was not saved: {exc}")
        self.pending_secrets = {}
        return problems

    # -- actions -----------------------------------------------------------------------
    def _choose_file(self) -> None:
        start = str(Path.home() / ".config" / "Claude")
        path, _ = QFileDialog.getOpenFileName(self, "Import MCP servers", start,
                                              "JSON files (*.json);;All files (*)")
        if path:
            self.import_file(Path(path))

    def import_file(self, path: Path) -> list[str]:
        """Add (or replace) the servers of an ``mcpServers`` file; returns their names."""
        try:
            configs, secrets = parse_mcp_servers_json(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            self._say(f"Cannot read {path.name}: {exc}", error=True)
            return []
        except ImportProblem as exc:
            self._say(f"Cannot import {path.name}: {exc}", error=True)
            return []
        names = {c.name for c in configs}
        self.servers = [s for s in self.servers if s.name not in names] + configs
        self.pending_secrets.update(secrets)
        self._fill()
        kept = f" ({len(secrets)} secret value(s) will go to the keyring)" if secrets else ""
        self._say(f"Imported {', '.join(sorted(names))}{kept}. Press OK to save, then "
                  "“Start and list tools”.")
        return sorted(names)

    def remove_selected(self) -> None:
        item = self.table.currentItem()
        if item is None:
            return
        name = item.text(0)
        self.servers = [s for s in self.servers if s.name != name]
        self._fill()

    def refresh_selected(self) -> None:
        item = self.table.currentItem()
        if item is not None:
            self.refresh(item.text(0))

    def refresh(self, name: str) -> None:
        """Start ``name`` (saved servers only) in the background and show its tools."""
        if self.clients is None:
            self._say("Hydra is not running, so MCP servers cannot be started.", error=True)
            return
        saved = self.clients.settings.current.mcp.server(name)
        if saved is None or saved not in self.servers:
            self._say(f"Press OK or Apply first: {name} is not saved yet.", error=True)
            return
        self.states[name] = _Starting(name)
        self._fill()
        run_in_background(lambda: self.clients.refresh(name), self._refreshed, self)

    def _refreshed(self, state: Any, error: BaseException | None) -> None:
        if error is not None:
            self._say(f"Could not start the server: {error}", error=True)
            return
        self.states[state.name] = state
        self._fill()
        if state.state == "running":
            self._say(f"{state.name} offers {len(state.tools)} tool(s); reopen Settings to "
                      "enable them as Verbas.")
        else:
            self._say(f"{state.name}: {state.error}", error=True)

    # -- display -----------------------------------------------------------------------
    def _fill(self) -> None:
        self.table.clear()
        for s in self.servers:
            state = self.states.get(s.name)
            shown = "off" if not s.enabled else (state.state if state else "not saved yet")
            if state is not None and state.error and state.state == "failed":
                shown = f"failed: {state.error}"
            tools = ", ".join(state.tools) if state is not None else ""
            kind = f"{'HTTP' if s.transport == 'http' else 'stdio'}: {s.describe()}"
            item = QTreeWidgetItem([s.name, kind, shown, tools])
            item.setToolTip(2, shown)
            item.setToolTip(3, tools)
            self.table.addTopLevelItem(item)

    def row(self, name: str) -> dict[str, str]:
        """The texts of ``name``'s row, by column title (for tests and accessibility)."""
        for i in range(self.table.topLevelItemCount()):
            item = self.table.topLevelItem(i)
            if item.text(0) == name:
                return {title: item.text(n) for n, title in enumerate(COLUMNS)}
        raise KeyError(name)

    def _say(self, text: str, *, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet(ERROR_STYLE if error else "")


class _Starting:
    """A row's state while its server starts."""

    def __init__(self, name: str) -> None:
        self.name, self.state, self.error, self.tools = name, "starting", None, []
