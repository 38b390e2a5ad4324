"""Small modal questions, kept in one place so tests can answer them."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget


def confirm(parent: QWidget | None, title: str, text: str) -> bool:
    """Ask yes/no; True when the user confirms."""
    answer = QMessageBox.question(parent, title, text,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
                                  QMessageBox.StandardButton.Cancel)
    return answer == QMessageBox.StandardButton.Yes


def pick_gguf_file(parent: QWidget | None) -> str | None:
    """A GGUF file chosen by the user, or None."""
    path, _ = QFileDialog.getOpenFileName(parent, "Add a GGUF model", "",
                                          "GGUF models (*.gguf);;All files (*)")
    return path or None


def pick_model_folder(parent: QWidget | None, title: str = "Add a model folder") -> str | None:
    """A model folder (MLX or Transformers) chosen by the user, or None."""
    path = QFileDialog.getExistingDirectory(parent, title)
    return path or None


def inform(parent: QWidget | None, title: str, text: str) -> None:
    """Show a message with an OK button."""
    QMessageBox.information(parent, title, text)
