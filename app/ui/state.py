"""What the tray shows: one of the icon states plus a human status line.

The icon is green ("idle") only when a request would be answered: the server listens, the API is
on, and the active model exists and has not failed to load.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from app.services import Services

MODE_LABELS = {"direct": "Direct", "hydra": "Hydra"}


@dataclass(frozen=True)
class TrayState:
    """``name`` is an icon state (off/idle/generating/loading/error); ``text`` says it in words."""

    name: str
    text: str
    detail: str = ""


def compute_state(services: Services, failures: Mapping[str, str] | None = None,
                  loading_since: Mapping[str, float] | None = None) -> TrayState:
    """The state right now.

    Order: the server not listening (a port conflict included), a model loading, the API off,
    the API on but unable to answer (no active model, or the active model failed to load),
    generating, idle.  A failed load of a model that is *not* active does not turn the icon red.
    """
    server = services.server
    settings = services.settings.current
    failures = failures or {}
    if not server.running:
        why = server.error or "the API server is not running"
        return TrayState("error", "Error", why)
    loading = services.hub.loading_ids()
    if loading:
        return TrayState("loading", "Loading a model", loading_detail(loading, loading_since or {}))
    if not settings.api_enabled:
        return TrayState("off", "API off")
    active = settings.active_model
    if not active or settings.row(active) is None:
        return TrayState("error", "API on, no model", "The API is on but no model is active: add one in "
                         "Settings ▸ Models or pick one in the Model menu.")
    if active in failures:
        return TrayState("error", "Model failed to load", f"{active}: {failures[active]}")
    if services.hub.is_busy() or services.request_log.in_flight > 0:
        return TrayState("generating", "Generating")
    return TrayState("idle", "API on")


def loading_detail(loading: list[str], since: Mapping[str, float], now: float | None = None) -> str:
    """``id (12 s)`` for each model being loaded (the runtimes report no fraction)."""
    now = time.monotonic() if now is None else now
    parts = []
    for model_id in loading:
        started = since.get(model_id)
        parts.append(f"{model_id} ({now - started:.0f} s)" if started is not None else model_id)
    return ", ".join(parts)


def current_model_label(services: Services) -> str:
    """The active model's label, or a hint that none is picked."""
    s = services.settings.current
    row = s.row(s.active_model)
    return row.label if row else "none selected"


def mode_label(services: Services) -> str:
    """The tray's mode in words (it applies to every request that is not an alias)."""
    return MODE_LABELS.get(services.settings.current.mode, services.settings.current.mode)


def status_line(services: Services, state: TrayState) -> str:
    """One line for the menu: state · URL · mode · model · requests served."""
    url = services.server.base_url if services.server.running else "not listening"
    served = services.request_log.served
    return (f"{state.text} · {url} · {mode_label(services)} mode · "
            f"model: {current_model_label(services)} · {served} request{'s' if served != 1 else ''}")


def tooltip(services: Services, state: TrayState) -> str:
    """The tray tooltip: state, base URL, and the detail when there is one."""
    lines = [f"Tater Desktop: {state.text}"]
    if services.server.running:
        lines.append(services.server.base_url)
    if state.detail:
        lines.append(state.detail)
    return "\n".join(lines)
