"""Settings ▸ Models: the selected row's memory estimate as it is being edited, and the free RAM.

The estimate runs on a worker thread (a Transformers row imports torch to pick its device),
debounced, and only the result for the latest row and options is ever shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QWidget

from app.memory_estimate import (
    MemoryEstimate,
    available_memory,
    estimate_row,
    human_bytes,
    weights_in_ram,
)
from app.settings import ModelRow
from app.ui.forms import ERROR_STYLE
from app.ui.workers import run_in_background

DEBOUNCE_MS = 300
HINT_STYLE = "color: palette(placeholder-text);"


@dataclass(frozen=True)
class Footprint:
    """A row's estimate, the RAM free when it was made, and whether the weights go to RAM."""

    estimate: MemoryEstimate
    free: int
    in_ram: bool

    @property
    def refused(self) -> bool:
        """Whether loading the row now would be refused for memory."""
        return self.in_ram and self.estimate.total > self.free

    def text(self) -> str:
        """``Needs about 1.2 GiB of memory (weights … + KV cache … x 4 slots + compute …); 9 GiB free``."""
        total, _, parts = self.estimate.describe().partition(" (")
        line = f"Needs about {total} of memory ({parts}"
        if self.refused:
            return (f"{line}, but only {human_bytes(self.free)} is free: loading it would be "
                    f"refused. Choose a smaller context, fewer parallel slots or a smaller model.")
        if not self.in_ram:
            return f"{line}; {human_bytes(self.free)} of RAM free (GPU memory is not checked)."
        return f"{line}; {human_bytes(self.free)} free."


def measure(row: ModelRow) -> Footprint | None:
    """``row``'s footprint (blocking: reads headers, may import torch); None without an estimate."""
    estimate = estimate_row(row)
    if estimate is None:
        return None
    return Footprint(estimate, available_memory(), weights_in_ram(row))


class FootprintLabel(QLabel):
    """The selected row's estimated memory; hidden when it has none (remote, not downloaded)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setVisible(False)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(DEBOUNCE_MS)
        self.timer.timeout.connect(self._start)
        self.owner: object = None  # the entry the shown line is about
        self.row: ModelRow | None = None  # the row (and options) wanted now
        self.footprint: Footprint | None = None  # what is shown
        self.answered: ModelRow | None = None  # the row the shown line (or its absence) is for

    def show_row(self, owner: object, row: ModelRow | None) -> None:
        """Follow the selected entry ``owner`` as ``row`` (None: its options do not parse, so the
        last line stays).  Another entry's line is hidden at once, never shown for this one."""
        if owner is not self.owner:
            self.owner, self.answered = owner, None
            self._show(None)
        if owner is None:
            self.row = None
            self.timer.stop()
            return
        if row is not None:
            self.row = row
            self.timer.start()  # restarted by every edit: one estimate once typing pauses

    def _start(self) -> None:
        row = self.row
        if row is not None:
            run_in_background(lambda: measure(row), lambda result, error: self._done(row, result, error),
                              self)

    def _done(self, row: ModelRow, result: Footprint | None, error: BaseException | None) -> None:
        if row is not self.row:
            return  # a stale answer: another row or other options were asked for since
        self.answered = row
        self._show(None if error is not None else result)

    def _show(self, footprint: Footprint | None) -> None:
        self.footprint = footprint
        self.setVisible(footprint is not None)
        self.setText(footprint.text() if footprint else "")
        self.setStyleSheet(ERROR_STYLE if footprint and footprint.refused else HINT_STYLE)
