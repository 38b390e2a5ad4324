"""Form helpers for the settings pages: a field with its error message right under it."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import ValidationError
from PySide6.QtWidgets import QFormLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

ERROR_STYLE = "color: #c62828;"


class FieldRow(QWidget):
    """An input widget and, below it, its error (hidden while there is none)."""

    def __init__(self, widget: QWidget, help_text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.widget = widget
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)  # no tall gaps
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(widget)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: palette(placeholder-text); font-size: small;")
        layout.addWidget(self.hint)
        self.set_help(help_text)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.setVisible(False)
        self.error.setAccessibleName("error")
        layout.addWidget(self.error)

    def set_help(self, text: str) -> None:
        """The help line under the field (hidden when empty)."""
        self.hint.setText(text)
        self.hint.setVisible(bool(text))

    def set_error(self, message: str | None) -> None:
        """Show ``message`` under the field (None or "" hides it)."""
        self.error.setText(message or "")
        self.error.setVisible(bool(message))

    @property
    def error_text(self) -> str:
        return self.error.text() if not self.error.isHidden() else ""


class Form:
    """A QFormLayout of named :class:`FieldRow` s."""

    def __init__(self, layout: QFormLayout) -> None:
        self.layout = layout
        self.rows: dict[str, FieldRow] = {}

    def add(self, name: str, label: str, widget: QWidget, help_text: str = "") -> FieldRow:
        row = FieldRow(widget, help_text)
        self.layout.addRow(label, row)
        self.rows[name] = row
        return row

    def clear_errors(self) -> None:
        for row in self.rows.values():
            row.set_error(None)

    def set_error(self, name: str, message: str) -> bool:
        """Show an error on the named field; False when there is no such field."""
        row = self.rows.get(name)
        if row is None:
            return False
        row.set_error(message)
        return True

    def fail(self, name: str, message: str) -> bool:
        """Show an error on the named field and return False (for ``ok = form.fail(...)``)."""
        self.set_error(name, message)
        return False

    def errors(self) -> dict[str, str]:
        """Field name → message for every field showing an error."""
        return {n: r.error_text for n, r in self.rows.items() if r.error_text}


def parse_int(text: str, low: int | None = None, high: int | None = None) -> int:
    """A whole number within bounds; ValueError says what is wrong in plain words."""
    t = text.strip()
    if not re.fullmatch(r"[+-]?\d+", t):
        raise ValueError("Enter a whole number." if t else "This field is required.")
    value = int(t)
    _check_range(value, low, high)
    return value


def parse_float(text: str, low: float | None = None, high: float | None = None,
                exclusive_low: bool = False) -> float:
    """A number within bounds; ValueError says what is wrong in plain words."""
    t = text.strip()
    try:
        value = float(t)
    except ValueError:
        raise ValueError("Enter a number." if t else "This field is required.") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("Enter a finite number.")
    if exclusive_low and low is not None and value <= low:
        raise ValueError(f"Must be more than {low:g}.")
    _check_range(value, None if exclusive_low else low, high)
    return value


def _check_range(value: float, low: float | None, high: float | None) -> None:
    if low is not None and high is not None and not low <= value <= high:
        raise ValueError(f"Must be between {low:g} and {high:g}.")
    if low is not None and value < low:
        raise ValueError(f"Must be at least {low:g}.")
    if high is not None and value > high:
        raise ValueError(f"Must be at most {high:g}.")


def validation_messages(exc: ValidationError) -> list[tuple[tuple[str | int, ...], str]]:
    """(location, message) pairs from a pydantic error, messages without pydantic's prefixes."""
    out = []
    for err in exc.errors():
        msg = str(err.get("msg", "invalid"))
        msg = msg.removeprefix("Value error, ")
        out.append((tuple(err.get("loc", ())), msg[:1].upper() + msg[1:]))
    return out


def lines(text: str) -> list[str]:
    """Non-empty stripped lines."""
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def first(items: Sequence[str]) -> str:
    return items[0] if items else ""
