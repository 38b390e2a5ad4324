"""Settings ▸ Models: a pool row's members and their health, refreshed while the row is shown."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QWidget

from app.providers.base import ModelSource
from app.providers.pool import MemberHealth, PoolProvider, pool_health

REFRESH_MS = 1000
MARKS = {"healthy": "●", "unhealthy": "✕", "untried": "○"}


def health_summary(health: list[MemberHealth] | None) -> str:
    """One line for a pool row's tooltip, e.g. ``1 of 2 members healthy``."""
    if health is None:
        return "not loaded: member health shows after its first request"
    ok = sum(1 for h in health if h.state == "healthy")
    return f"{ok} of {len(health)} members healthy"


def health_text(health: list[MemberHealth] | None) -> str:
    """One line per member: its state, requests in flight and served, and why it last failed."""
    if health is None:
        return ("Pool members: their health shows once the pool is loaded (press Load, or send it "
                "a request).")
    lines = ["Pool members:"]
    for h in health:
        parts = [f"{MARKS[h.state]} {h.member_id}: {h.state}", f"{h.in_flight} in flight",
                 f"{h.served} served"]
        if h.retry_in_seconds > 0:
            parts.append(f"retried in {h.retry_in_seconds:.0f} s")
        if h.state == "unhealthy" and h.last_error:
            parts.append(f"last error: {h.last_error}")
        lines.append(" · ".join(parts))
    return "\n".join(lines)


class PoolHealthLabel(QLabel):
    """Shows the selected pool row's member health (hidden for other rows)."""

    def __init__(self, models: ModelSource, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.models = models
        self.pool_id: str | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.setVisible(False)

    def show_row(self, row_id: str | None, provider: str | None) -> None:
        """Follow the selected row: a pool's health, refreshed every second; nothing otherwise."""
        self.pool_id = row_id if row_id and provider == PoolProvider.name else None
        self.setVisible(self.pool_id is not None)
        if self.pool_id is None:
            self.timer.stop()
        else:
            self.timer.start()
        self.refresh()

    def refresh(self) -> None:
        if self.pool_id is None:
            self.clear()
            return
        self.setText(health_text(pool_health(self.models, self.pool_id)))
