"""Settings ▸ Models: the rows, adding (file, folder, cache, remote, discovered), options, load/unload."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.keystore import KeystoreUnavailable
from app.model_hub import HubEvent
from app.model_sources import SourceError, cached_repo_row, provider_for_path
from app.providers import PROVIDER_PATHS, provider_class
from app.providers.pool import pool_health
from app.settings import ModelRow, Settings
from app.ui import dialogs
from app.ui.actions import Controller
from app.ui.forms import Form, validation_messages
from app.ui.pages.base import Page
from app.ui.pages.discovery_panel import DiscoveryPanel
from app.ui.pages.footprint import FootprintLabel
from app.ui.pages.model_entry import Entry, cached_repo_ids, cached_snapshots
from app.ui.pages.option_fields import (
    FIELDS,
    LABELS,
    fields_for,
    help_text,
    merge_options,
    options_problem,
    other_options_help,
)
from app.ui.pages.pool_health import PoolHealthLabel, health_summary
from app.ui.pages.remote_dialog import RemoteDialog

DETAIL_FIELDS = ("id", "display_name", "provider", "source", "options", "api_key", *FIELDS)


class ModelsPage(Page):
    """The configured models."""

    title = "Models"
    key = "models"

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(controller, parent)
        self.entries: list[Entry] = []
        self.current: int = -1
        self.active_entry: Entry | None = None  # the row that is (or becomes, on Apply) active
        self._filling = False  # widgets are being filled from an entry: edits are not the user's
        self.get_models_dialog: QDialog | None = None
        outer = QVBoxLayout(self)
        top = QHBoxLayout()
        outer.addLayout(top, 3)  # the rows and their fields get most of the height
        self.list = QListWidget()
        self.list.currentRowChanged.connect(self._select)
        top.addWidget(self.list, 1)
        detail = QGroupBox("Selected model")
        detail_layout = QFormLayout(detail)
        detail_layout.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.form = Form(detail_layout)
        self.id_edit, self.name_edit, self.source_edit = QLineEdit(), QLineEdit(), QLineEdit()
        self.provider_box = QComboBox()
        self.provider_box.addItems(list(PROVIDER_PATHS))
        self.options_edit = QPlainTextEdit()
        self.options_edit.setMinimumHeight(80)
        self.options_edit.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.key_edit = QLineEdit()
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setPlaceholderText("kept in the keyring; leave empty to keep")
        self.form.add("id", "Id", self.id_edit, "What clients send as \"model\".")
        self.form.add("display_name", "Display name", self.name_edit)
        self.form.add("provider", "Runtime", self.provider_box)
        self.form.add("source", "Source", self.source_edit, "File, folder, repo id or upstream model.")
        self.typed_edits: dict[str, QLineEdit | QPlainTextEdit] = {}
        for name in FIELDS:
            edit: QLineEdit | QPlainTextEdit = QPlainTextEdit() if name == "chat_template" else QLineEdit()
            if isinstance(edit, QPlainTextEdit):
                edit.setFixedHeight(60)
            self.typed_edits[name] = edit
            self.form.add(name, LABELS[name], edit, help_text(name))
        self.form.add("options", "Other options (JSON)", self.options_edit,
                      'e.g. {"flash_attn": true} or {"base_url": "…", "timeout": 60}')
        self.form.add("api_key", "Remote API key", self.key_edit)
        self.footprint = FootprintLabel()  # the memory the row needs, as edited
        detail_layout.addRow(self.footprint)
        scroll = QScrollArea()  # a long error or the key row grows the form instead of overlapping
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(detail)
        top.addWidget(scroll, 2)

        adders = QHBoxLayout()
        for text, slot in (("Add GGUF file…", self.add_gguf), ("Add folder…", self.add_folder),
                           ("Add from cache…", self.add_from_cache), ("Get models…", self.get_models),
                           ("Add remote server…", self.add_remote),
                           ("Remove", self.remove_selected)):
            button = QPushButton(text)
            button.clicked.connect(lambda _c=False, s=slot: s())
            adders.addWidget(button)
        outer.addLayout(adders)
        loader = QHBoxLayout()
        self.load_button, self.unload_button = QPushButton("Load"), QPushButton("Unload")
        self.active_button = QPushButton("Make active")
        self.active_button.setToolTip("The active model answers requests that name no model or an "
                                      "alias (tater/base, tater/hydra). Press Apply to save.")
        self.active_button.clicked.connect(self.make_selected_active)
        self.load_button.clicked.connect(self.load_selected)
        self.unload_button.clicked.connect(self.unload_selected)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # busy indicator: loaders report no fraction
        self.progress.setVisible(False)
        self.status = QLabel()
        self.status.setWordWrap(True)
        for w in (self.active_button, self.load_button, self.unload_button, self.progress):
            loader.addWidget(w)
        loader.addWidget(self.status, 1)
        outer.addLayout(loader)
        self.pool_health = PoolHealthLabel(controller.services.hub)
        outer.addWidget(self.pool_health)
        self.discovery = DiscoveryPanel(self.add_row, self._own_port)
        outer.addWidget(self.discovery)
        controller.bridge.hub_event.connect(self._on_hub_event)
        for edit in (self.id_edit, self.name_edit, self.source_edit):
            edit.textChanged.connect(self._edited)
        self.options_edit.textChanged.connect(self._edited)
        for typed_edit in self.typed_edits.values():
            typed_edit.textChanged.connect(self._edited)
        self.provider_box.currentTextChanged.connect(self._edited)

    # -- loading into widgets --------------------------------------------------------------
    def load(self, settings: Settings) -> None:
        self.entries = [Entry.of(r) for r in settings.models]
        self.active_entry = next((e for e in self.entries if e.original_id == settings.active_model), None)
        self.current = -1
        self._relist(0 if self.entries else -1)

    def _relist(self, select: int) -> None:
        hub = self.controller.services.hub
        loaded, loading = set(hub.loaded_ids()), set(hub.loading_ids())
        self.list.blockSignals(True)
        self.list.clear()
        for e in self.entries:
            rid = e.data.get("id", "")
            mark = " ● loaded" if rid in loaded else " … loading" if rid in loading else ""
            star = "★ " if e is self.active_entry else ""
            active = " (active)" if e is self.active_entry else ""
            self.list.addItem(f"{star}{e.data.get('display_name') or rid}{active}{mark}")
            tip = f"{rid} · {e.data.get('provider')}"
            if e.data.get("provider") == "pool":
                tip += f" · {health_summary(pool_health(hub, rid))}"
            self.list.item(self.list.count() - 1).setToolTip(tip)
        self.list.blockSignals(False)
        self.current = -1
        self.list.setCurrentRow(select)
        if select < 0:
            self._select(-1)

    def _select(self, index: int) -> None:
        self._store_detail()
        self._filling = True
        try:
            self._fill(index)
        finally:
            self._filling = False
        self._show_load_state()
        self.status.setText(self._row_status())
        e = self._entry()
        self.pool_health.show_row(e.original_id if e else None, e.data.get("provider") if e else None)
        self.footprint.show_row(e, e.row() if e else None)

    def _fill(self, index: int) -> None:
        self.current = index
        self.form.clear_errors()  # type: ignore[union-attr]
        e = self.entries[index] if 0 <= index < len(self.entries) else None
        for w in (self.id_edit, self.name_edit, self.source_edit, self.options_edit, self.key_edit,
                  self.provider_box, *self.typed_edits.values()):
            w.setEnabled(e is not None)
        self.id_edit.setText(e.data.get("id", "") if e else "")
        self.name_edit.setText(e.data.get("display_name", "") if e else "")
        self.source_edit.setText(e.data.get("source", "") if e else "")
        self.provider_box.setCurrentText(e.data.get("provider", "") if e else "")
        self.options_edit.setPlainText(e.options_text if e else "")
        for name, edit in self.typed_edits.items():
            text = e.typed.get(name, "") if e else ""
            edit.setPlainText(text) if isinstance(edit, QPlainTextEdit) else edit.setText(text)
        self._show_typed_rows()
        self.key_edit.setText(e.api_key if e else "")
        remote = bool(e and e.data.get("provider") == "remote")
        self.form.layout.setRowVisible(self.form.rows["api_key"], remote)  # type: ignore[union-attr]

    def _show_typed_rows(self) -> None:
        """Only the typed options the selected row's runtime understands."""
        provider = self.provider_box.currentText()
        shown = fields_for(provider) if self._entry() is not None else FIELDS
        for name in FIELDS:
            self.form.layout.setRowVisible(self.form.rows[name], name in shown)  # type: ignore[union-attr]
            self.form.rows[name].set_help(help_text(name, provider))
        self.options_edit.setToolTip(other_options_help(provider))

    def _edited(self) -> None:
        self._show_typed_rows()
        if not self._filling:
            self._store_detail()
            self._show_load_state()
            e = self._entry()
            self.footprint.show_row(e, e.row() if e else None)

    def _row_status(self) -> str:
        """What the status line says about the selected row (its own state, never another's)."""
        e = self._entry()
        if e is None:
            return ""
        rid = e.data.get("id")
        hub = self.controller.services.hub
        if rid in hub.loading_ids():
            return "Loading…"
        if rid in hub.loaded_ids():
            return "Loaded."
        if rid in self.controller.failures:
            return f"Failed to load: {self.controller.failures[rid]}"
        if self._saved_unchanged(e) is None:
            return "Not saved yet: press Apply to load it."
        return ""

    def _entry(self) -> Entry | None:
        return self.entries[self.current] if 0 <= self.current < len(self.entries) else None

    def _store_detail(self) -> None:
        if self._filling or not 0 <= self.current < len(self.entries):
            return
        e = self.entries[self.current]
        e.data.update(id=self.id_edit.text().strip(), display_name=self.name_edit.text().strip(),
                      source=self.source_edit.text().strip(), provider=self.provider_box.currentText())
        e.options_text = self.options_edit.toPlainText()
        e.typed = {name: (edit.toPlainText() if isinstance(edit, QPlainTextEdit) else edit.text())
                   for name, edit in self.typed_edits.items()}
        e.api_key = self.key_edit.text().strip()

    # -- adding and removing --------------------------------------------------------------
    def add_row(self, row: ModelRow, api_key: str = "") -> None:
        """Add a new row (id made unique) and select it."""
        self._store_detail()
        ids = {e.data.get("id") for e in self.entries}
        new_id, n = row.id, 2
        while new_id in ids:
            new_id, n = f"{row.id}-{n}", n + 1
        entry = Entry.of(row.model_copy(update={"id": new_id}), original=False)
        entry.api_key = api_key
        self.entries.append(entry)
        self._relist(len(self.entries) - 1)

    def add_path(self, path: str, provider: str | None = None) -> bool:
        """Add a GGUF file or model folder; a bad path shows why under the source field."""
        try:
            name = provider or provider_for_path(Path(path))
            row = provider_class(name).row_for(str(Path(path).resolve()))
        except (SourceError, ValueError, KeyError) as exc:
            self.status.setText(f"Not added: {exc}")
            return False
        self.add_row(row)
        return True

    def add_gguf(self) -> None:
        path = dialogs.pick_gguf_file(self)
        if path:
            self.add_path(path)

    def add_folder(self) -> None:
        path = dialogs.pick_model_folder(self, "Add an MLX or Transformers model folder")
        if path:
            self.add_path(path)

    def add_from_cache(self) -> None:
        repos = cached_repo_ids()
        repo, ok = QInputDialog.getItem(self, "Add from the local cache",
                                        "Repo id (from the Hugging Face cache; nothing is downloaded):",
                                        repos, 0, True)
        if ok and repo.strip():
            self.add_cached(repo)

    def add_cached(self, repo: str) -> bool:
        """Add a cached repository (its GGUF file, or its model folder); refuse one not cached."""
        try:
            row = cached_repo_row(repo, cached_snapshots())
        except (SourceError, ValueError) as exc:
            self.status.setText(f"Not added: {exc}")
            return False
        self.add_row(row)
        return True

    def get_models(self) -> None:
        """Models already on disk, and Hub search and download (rows are added here)."""
        from app.ui.pages.get_models_dialog import GetModelsDialog

        if self.get_models_dialog is None:  # made once and kept: closing it cancels a download
            self.get_models_dialog = GetModelsDialog(self.add_row, self)
        self.get_models_dialog.open()  # window-modal, without blocking the event loop

    def add_remote(self) -> None:
        dialog = RemoteDialog(self)
        try:
            if dialog.exec():
                data = dialog.result_data()
                for row in data["rows"]:
                    self.add_row(row, data["api_key"])
        finally:
            dialog.deleteLater()

    def make_selected_active(self) -> None:
        """Mark the selected row active (saved with Apply / OK)."""
        e = self._entry()
        if e is not None:
            self.active_entry = e
            self._store_detail()
            self._relist(self.current)
            self.status.setText("Press Apply to make it the active model.")

    def remove_selected(self) -> None:
        if 0 <= self.current < len(self.entries):
            del self.entries[self.current]
            self.current = -1
            self._relist(min(self.list.currentRow(), len(self.entries) - 1))

    # -- load / unload ---------------------------------------------------------------------
    def _selected_saved_id(self) -> str | None:
        """The selected row's id if it is saved unchanged (only saved rows can load)."""
        self._store_detail()
        e = self._entry()
        if e is None:
            return None
        saved_id = self._saved_unchanged(e)
        if saved_id is None:
            self.status.setText("Press Apply (or OK) first: this row has unsaved changes.")
        return saved_id

    def _saved_unchanged(self, e: Entry) -> str | None:
        """``e``'s id when it is saved and unchanged since, else None."""
        saved = self.controller.services.settings.current.row(e.original_id)
        options, _errors = e.options()
        if saved is None or saved.model_dump(mode="json") != {**e.data, "options": options}:
            return None
        return saved.id

    def load_selected(self) -> None:
        model_id = self._selected_saved_id()
        if model_id:
            self.controller.preload(model_id)
            self._show_load_state()

    def unload_selected(self) -> None:
        model_id = self._selected_saved_id()
        if model_id and not self.controller.services.hub.unload(model_id):
            self.status.setText("Not unloaded: it is not loaded, or it is generating right now.")
        self._show_load_state()

    def _show_load_state(self) -> None:
        hub = self.controller.services.hub
        e = self._entry()
        saved_id = self._saved_unchanged(e) if e is not None else None
        loading = saved_id is not None and saved_id in hub.loading_ids()
        self.progress.setVisible(loading)
        self.load_button.setEnabled(saved_id is not None and not loading)
        self.load_button.setToolTip("" if saved_id or e is None else "Press Apply first to save this row.")
        self.unload_button.setEnabled(saved_id is not None and saved_id in hub.loaded_ids())
        self.active_button.setEnabled(e is not None and e is not self.active_entry)
        if loading:
            self.status.setText("Loading…")

    def _on_hub_event(self, event: HubEvent) -> None:
        self._store_detail()
        self._relist(self.current)  # shows the selected row's own state
        self.pool_health.refresh()
        rid = self.entries[self.current].data.get("id") if 0 <= self.current < len(self.entries) else None
        if event.model_id == rid:
            if event.kind == "loaded":
                self.status.setText(f"Loaded in {event.seconds or 0:.2f} s.")
            elif event.kind == "failed":
                self.status.setText(f"Failed to load: {event.message}")
            elif event.kind == "unloaded":
                self.status.setText(f"Unloaded ({event.message}).")

    def _own_port(self) -> int | None:
        server = self.controller.services.server
        return server.port if server.running else None

    # -- validation and saving -------------------------------------------------------------
    def apply(self, draft: dict[str, Any]) -> bool:
        self._store_detail()
        rows: list[dict[str, Any]] = []
        problems: list[tuple[int, dict[str, str]]] = []
        seen: set[str] = set()
        for i, e in enumerate(self.entries):
            errors: dict[str, str] = {}
            data = dict(e.data)
            try:
                rest = json.loads(e.options_text or "{}")
                if not isinstance(rest, dict):
                    errors["options"] = 'Options must be a JSON object, e.g. {"flash_attn": true}.'
                    rest = {}
            except ValueError as exc:
                errors["options"] = f"Not valid JSON: {exc}"
                rest = {}
            data["options"], typed_errors = merge_options(str(data.get("provider", "")), e.typed, rest)
            errors.update(typed_errors)
            try:
                ModelRow.model_validate(data)
            except ValidationError as exc:
                for loc, msg in validation_messages(exc):
                    name = str(loc[0]) if loc else "id"
                    errors.setdefault(name if name in DETAIL_FIELDS else "id", msg)
            if data.get("id") in seen:
                errors.setdefault("id", f"Another row already has the id '{data.get('id')}'.")
            seen.add(data.get("id", ""))
            if data.get("provider") == "remote" and not errors.get("options"):
                base = str(data["options"].get("base_url", ""))
                if not base.startswith(("http://", "https://")):
                    errors["options"] = 'A remote row needs "base_url": "http://host:port/v1".'
            if not errors.get("options") and not typed_errors:
                problem = options_problem(str(data.get("provider", "")), data["options"])
                if problem:
                    errors["options"] = problem[0].upper() + problem[1:] + "."
            if errors:
                problems.append((i, errors))
            rows.append(data)
        if problems:
            index, errors = problems[0]
            self.list.setCurrentRow(index)
            for name, msg in errors.items():
                self.form.set_error(name, msg)  # type: ignore[union-attr]
            return False
        draft["models"] = rows
        if self.active_entry not in self.entries:  # removed, or none yet: a model is always active
            self.active_entry = self.entries[0] if self.entries else None  # when there is one
        draft["active_model"] = self.active_entry.data["id"] if self.active_entry else None
        return True

    def commit(self) -> list[str]:
        from app.providers.remote import RemoteProvider

        problems = []
        for e in self.entries:
            if e.data.get("provider") == "remote" and e.api_key:
                try:
                    RemoteProvider().set_api_key(e.data["id"], e.api_key)
                    e.api_key = ""
                except KeystoreUnavailable as exc:
                    problems.append(f"The key for {e.data['id']} was not saved: {exc}")
            e.original_id = e.data.get("id")
        self._relist(self.current)
        return problems
