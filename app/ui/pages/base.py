"""What every settings page does: load, validate into a draft, commit side effects."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QWidget

from app.settings import Settings
from app.ui.actions import Controller
from app.ui.forms import Form


class Page(QWidget):
    """A settings page.  Pages never write anything until the window's OK/Apply."""

    title = ""
    key = ""

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.form: Form | None = None

    def load(self, settings: Settings) -> None:
        """Fill the widgets from saved settings."""

    def apply(self, draft: dict[str, Any]) -> bool:
        """Parse the widgets into ``draft`` (a settings dict); show errors; False when invalid."""
        return True

    def route_error(self, loc: tuple[str | int, ...], message: str) -> bool:
        """Show an error found when validating the whole settings; True if this page owns it."""
        return False

    def commit(self) -> list[str]:
        """After the settings file was saved: write what lives elsewhere (the keyring)."""
        return []
