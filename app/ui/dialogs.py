"""Small modal questions, kept in one place so tests can answer them."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

_last_folder: dict[str, str] = {}  # kind -> the folder the user last picked from


def start_folder(kind: str) -> str:
    """Where a file dialog opens: the folder last used for ``kind``, else the home folder
    (never the process's working directory, which for a tray app is meaningless)."""
    last = _last_folder.get(kind)
    if last and Path(last).is_dir():
        return last
    return str(Path.home())


def _remember(kind: str, path: str) -> None:
    if path:  # the folder holding the pick (for a model folder: beside it, to pick a sibling)
        _last_folder[kind] = str(Path(path).parent)


def confirm(parent: QWidget | None, title: str, text: str) -> bool:
    """Ask yes/no; True when the user confirms."""
    answer = QMessageBox.question(parent, title, text,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
                                  QMessageBox.StandardButton.Cancel)
    return answer == QMessageBox.StandardButton.Yes


def pick_gguf_file(parent: QWidget | None) -> str | None:
    """A GGUF file chosen by the user, or None."""
    path, _ = QFileDialog.getOpenFileName(parent, "Add a GGUF model", start_folder("gguf"),
                                          "GGUF models (*.gguf);;All files (*)")
    _remember("gguf", path)
    return path or None


def pick_model_folder(parent: QWidget | None, title: str = "Add a model folder") -> str | None:
    """A model folder (MLX or Transformers) chosen by the user, or None."""
    path = QFileDialog.getExistingDirectory(parent, title, start_folder("folder"))
    _remember("folder", path)
    return path or None

