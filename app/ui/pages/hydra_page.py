"""Settings ▸ Hydra: persona, history, limits, and the Verbas (tools) with their settings."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.keystore import KeystoreUnavailable, SecretStore
from app.settings import HydraSettings, Settings
from app.ui.actions import Controller
from app.ui.forms import Form, parse_float, parse_int, validation_messages
from app.ui.pages.base import Page
from app.ui.pages.mcp_servers_panel import McpServersPanel

log = logging.getLogger(__name__)

LIMITS: tuple[tuple[str, str, str], ...] = (
    ("history_messages", "History length (messages)", "int"),
    ("max_steps", "Max tool steps per turn", "int"),
    ("max_llm_calls", "Max model calls per turn", "int"),
    ("tool_timeout_seconds", "Tool time limit (s)", "float"),
    ("turn_timeout_seconds", "Turn time limit (s)", "float"),
)


def mcp_clients(controller: Controller) -> Any | None:
    """The running Hydra's MCP servers (app.mcp.clients.McpClients), or None."""
    hydra = controller.services.context.hydra
    return hydra.mcp if hydra is not None else None


def verba_registry(controller: Controller) -> Any | None:
    """The plugin folder as it is now (a fresh discovery, so a newly added or broken plugin file
    shows at once; saving hands it to the running Hydra agent), with the MCP servers' tools;
    None when app.verbas is absent."""
    try:
        from app.verbas.registry import VerbaRegistry
    except ImportError:
        return None
    registry = VerbaRegistry.discover(controller.services.settings.config_dir)
    clients = mcp_clients(controller)
    if clients is not None:
        registry.attach(clients)
    return registry


def typed_value(text: str, default: Any) -> Any:
    """Parse a Verba setting like its default: whole numbers, numbers, else text."""
    if isinstance(default, int) and not isinstance(default, bool):
        return parse_int(text)
    if isinstance(default, float):
        return parse_float(text)
    return text


class HydraPage(Page):
    """Hydra's behaviour and tools."""

    title = "Hydra"
    key = "hydra"

    def __init__(self, controller: Controller, parent: QWidget | None = None,
                 secrets: SecretStore | None = None) -> None:
        super().__init__(controller, parent)
        self.secrets = secrets or SecretStore()
        outer = QVBoxLayout(self)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        outer.addWidget(scroll)
        inner = QWidget()
        scroll.setWidget(inner)
        body = QVBoxLayout(inner)
        general = QGroupBox("Agent")
        self.form = Form(QFormLayout(general))
        self.persona = QPlainTextEdit()
        self.persona.setPlaceholderText("e.g. You are Tater, a friendly helper who answers briefly.")
        self.persona.setFixedHeight(70)
        self.form.add("persona", "Persona", self.persona)
        self.limit_edits: dict[str, QLineEdit] = {}
        for name, label, _kind in LIMITS:
            edit = QLineEdit()
            edit.setObjectName(name)
            self.limit_edits[name] = edit
            self.form.add(name, label, edit)
        body.addWidget(general)

        self.registry = verba_registry(controller)
        # The Verbas this page shows, fixed while it is open (MCP tools may appear meanwhile).
        self.shown = self.registry.all() if self.registry is not None else []
        self.verba_boxes: dict[str, QCheckBox] = {}
        self.verba_fields: dict[tuple[str, str], QWidget] = {}
        self.verba_forms: dict[str, Form] = {}
        self.secret_changes: dict[tuple[str, str], str] = {}
        self.body = body
        self.verbas_group: QGroupBox | None = None
        if self.registry is not None:
            self.verbas_group = self._verbas_group()
            body.addWidget(self.verbas_group)
        self.mcp_panel = McpServersPanel(mcp_clients(controller), self.secrets)
        body.addWidget(self.mcp_panel)
        body.addStretch(1)

    def _follow_new_tools(self) -> None:
        """Rebuild the Verbas list when MCP servers brought or took tools since it was built."""
        now = self.registry.all()
        if [v.id for v in now] == [v.id for v in self.shown] or self.verbas_group is None:
            return
        self.shown = now
        self.verba_boxes, self.verba_fields, self.verba_forms = {}, {}, {}
        old, self.verbas_group = self.verbas_group, self._verbas_group()
        self.body.replaceWidget(old, self.verbas_group)
        old.hide()
        old.deleteLater()

    def _verbas_group(self) -> QGroupBox:
        group = QGroupBox("Verbas (tools Hydra may use when tools are allowed)")
        layout = QVBoxLayout(group)
        for v in self.shown:
            box = QCheckBox(v.name + ("  (acts on the world)" if v.acts_on_world else ""))
            box.setObjectName(f"verba-{v.id}")
            self.verba_boxes[v.id] = box
            layout.addWidget(box)
            about = QLabel(v.description)
            about.setWordWrap(True)
            about.setContentsMargins(24, 0, 0, 0)
            about.setStyleSheet("color: palette(placeholder-text);")
            layout.addWidget(about)
            if v.settings:
                form_layout = QFormLayout()
                form_layout.setContentsMargins(24, 0, 0, 6)
                form = self.verba_forms[v.id] = Form(form_layout)
                for f in v.settings:
                    widget = self._setting_widget(v.id, f)
                    form.add(f.name, f.label + (" *" if f.required else ""), widget, "")
                    widget.setToolTip(f.description)
                layout.addLayout(form_layout)
        for problem in self.registry.problems:
            label = QLabel(f"⚠ {problem.name} could not be loaded: {problem.error}")
            label.setWordWrap(True)
            label.setStyleSheet("color: #c62828;")
            layout.addWidget(label)
        return group

    def _setting_widget(self, verba_id: str, f: Any) -> QWidget:
        widget: QWidget
        if isinstance(f.default, bool) and not f.secret:
            widget = QCheckBox()
        else:
            edit = QLineEdit()
            if f.secret:
                edit.setEchoMode(QLineEdit.EchoMode.Password)
                edit.setPlaceholderText("kept in the keyring; leave empty to keep")
            elif f.default is not None:
                edit.setPlaceholderText(f"default: {f.default}")
            widget = edit
        widget.setObjectName(f"verba-{verba_id}-{f.name}")
        self.verba_fields[(verba_id, f.name)] = widget
        return widget

    def load(self, settings: Settings) -> None:
        h = settings.hydra
        self.persona.setPlainText(h.persona)
        for name, edit in self.limit_edits.items():
            edit.setText(f"{getattr(h, name):g}")
        self.mcp_panel.load(settings)
        if self.registry is None:
            return
        self._follow_new_tools()
        for v in self.shown:
            self.verba_boxes[v.id].setChecked(self.registry.is_enabled(v, settings))
            saved = settings.verbas.get(v.id, {})
            for f in v.settings:
                widget = self.verba_fields[(v.id, f.name)]
                value = saved.get(f.name)
                if isinstance(widget, QCheckBox):
                    widget.setChecked(bool(f.default if value is None else value))
                elif not f.secret:
                    widget.setText("" if value is None else str(value))  # type: ignore[attr-defined]

    def apply(self, draft: dict[str, Any]) -> bool:
        assert self.form is not None
        self.form.clear_errors()
        ok = True
        hydra = dict(draft.get("hydra", {}))
        hydra["persona"] = self.persona.toPlainText().strip()
        for name, _label, kind in LIMITS:
            text = self.limit_edits[name].text()
            try:
                hydra[name] = parse_int(text) if kind == "int" else parse_float(text, 0, exclusive_low=True)
            except ValueError as exc:
                ok = self.form.fail(name, str(exc))
        try:  # bounds come from the settings model (fields that did not parse keep their old value)
            HydraSettings.model_validate(hydra)
        except ValidationError as exc:
            for loc, msg in validation_messages(exc):
                ok = self.form.fail(str(loc[0]) if loc else "persona", msg)
        draft["hydra"] = hydra
        self.mcp_panel.apply(draft)
        if self.registry is not None:
            ok = self._apply_verbas(draft) and ok
        return ok

    def _apply_verbas(self, draft: dict[str, Any]) -> bool:
        ok = True
        verbas = {k: dict(v) for k, v in draft.get("verbas", {}).items()}
        self.secret_changes = {}
        for v in self.shown:
            form = self.verba_forms.get(v.id)
            if form:
                form.clear_errors()
            entry = verbas.setdefault(v.id, {})
            checked = self.verba_boxes[v.id].isChecked()
            if "enabled" in entry or checked != v.default_enabled:  # no churn for untouched defaults
                entry["enabled"] = checked
            for f in v.settings:
                widget = self.verba_fields[(v.id, f.name)]
                if isinstance(widget, QCheckBox):
                    if widget.isChecked() != bool(f.default) or f.name in entry:
                        entry[f.name] = widget.isChecked()
                    continue
                text = widget.text().strip()  # type: ignore[attr-defined]
                if f.secret:
                    if text:
                        self.secret_changes[(v.id, f.name)] = text
                    continue
                if not text:
                    entry.pop(f.name, None)
                    continue
                try:
                    entry[f.name] = typed_value(text, f.default)
                except ValueError as exc:
                    ok = form.fail(f.name, str(exc)) if form else False
            if not entry:
                del verbas[v.id]
        draft["verbas"] = verbas
        return ok

    def route_error(self, loc: tuple[str | int, ...], message: str) -> bool:
        assert self.form is not None
        if len(loc) >= 2 and loc[0] == "hydra":
            return self.form.set_error(str(loc[1]), message)
        return False

    def commit(self) -> list[str]:
        from app.verbas.registry import secret_entry

        problems = []
        for (verba_id, name), value in self.secret_changes.items():
            try:
                self.secrets.set(secret_entry(verba_id, name), value)
                self.verba_fields[(verba_id, name)].clear()  # type: ignore[attr-defined]
            except KeystoreUnavailable as exc:
                problems.append(f"{verba_id}.{name} was not saved: {exc}")
        self.secret_changes = {}
        problems.extend(self.mcp_panel.commit())
        hydra = self.controller.services.context.hydra
        if hydra is not None and self.registry is not None:
            hydra.verbas = self.registry  # the Verbas listed here are the ones Hydra now uses
        return problems
