"""The settings window: pages on the left, OK / Apply / Cancel.

OK and Apply validate every page first and show what is wrong next to the field; nothing is
written until all pages are valid.  Cancel writes nothing (the settings file stays byte-identical).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app import APP_NAME
from app.settings import Settings
from app.ui.actions import Controller
from app.ui.forms import ERROR_STYLE, validation_messages
from app.ui.pages.base import Page
from app.ui.pages.hydra_page import HydraPage
from app.ui.pages.key_page import KeyPage
from app.ui.pages.models_page import ModelsPage
from app.ui.pages.server_page import ServerPage


class SettingsWindow(QDialog):
    """One window, four pages."""

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.setWindowTitle(f"{APP_NAME} Settings")
        self.resize(900, 720)
        self.pages: list[Page] = [ModelsPage(controller), ServerPage(controller),
                                  HydraPage(controller), KeyPage(controller)]
        layout = QVBoxLayout(self)
        body = QHBoxLayout()
        layout.addLayout(body, 1)
        self.nav = QListWidget()
        self.nav.setFixedWidth(140)
        self.stack = QStackedWidget()
        for page in self.pages:
            self.nav.addItem(page.title)
            self.stack.addWidget(page)
        self.nav.currentRowChanged.connect(self.stack.setCurrentIndex)
        body.addWidget(self.nav)
        body.addWidget(self.stack, 1)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setStyleSheet(ERROR_STYLE)
        layout.addWidget(self.message)
        std = QDialogButtonBox.StandardButton
        self.buttons = QDialogButtonBox(std.Ok | std.Apply | std.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.buttons.button(std.Apply).clicked.connect(self.apply)
        layout.addWidget(self.buttons)
        self.reload()
        self.nav.setCurrentRow(0)

    def page(self, key: str) -> Page:
        return next(p for p in self.pages if p.key == key)

    def show_page(self, key: str) -> None:
        self.nav.setCurrentRow(self.pages.index(self.page(key)))

    def reload(self) -> None:
        """Fill every page from the saved settings (what is in the file, without env overrides)."""
        saved = self.controller.services.settings.saved
        for page in self.pages:
            page.load(saved)
        self.message.clear()

    def apply(self) -> bool:
        """Validate all pages, save if anything changed, then write keyring entries.  True = saved."""
        store = self.controller.services.settings
        before = store.saved.model_dump(mode="json")
        draft: dict[str, Any] = store.saved.model_dump(mode="json")
        self.message.clear()
        bad = [p for p in self.pages if not p.apply(draft)]
        if bad:
            return self._refuse(bad[0], "Some settings need fixing (see the messages next to the fields).")
        try:
            new = Settings.model_validate(draft)
        except ValidationError as exc:
            owner: Page | None = None
            leftovers = []
            for loc, msg in validation_messages(exc):
                page = next((p for p in self.pages if p.route_error(loc, msg)), None)
                owner = owner or page
                if page is None:
                    leftovers.append(f"{'.'.join(map(str, loc))}: {msg}")
            return self._refuse(owner, "; ".join(leftovers) or "Some settings need fixing.")
        if new.model_dump(mode="json") != before:
            try:
                store.replace(new)
            except (ValueError, OSError) as exc:
                return self._refuse(None, f"Not saved: {exc}")
        problems = [msg for p in self.pages for msg in p.commit()]
        if problems:
            self.message.setText("\n".join(problems))
            return False
        return True

    def _refuse(self, page: Page | None, message: str) -> bool:
        if page is not None:
            self.show_page(page.key)
        self.message.setText(message)
        return False

    def accept(self) -> None:
        if self.apply():
            super().accept()

    def reject(self) -> None:
        super().reject()
