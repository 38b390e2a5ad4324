"""What the tray shows: one of the icon states plus a human status line."""

from __future__ import annotations

from dataclasses import dataclass

from app.services import Services


@dataclass(frozen=True)
class TrayState:
    """``name`` is an icon state (off/idle/generating/loading/error); ``text`` says it in words."""

    name: str
    text: str
    detail: str = ""


def compute_state(services: Services, load_error: str | None = None) -> TrayState:
    """The state right now.  Errors win, then loading, generating, idle, off."""
    server = services.server
    settings = services.settings.current
    if not server.running:
        why = server.error or "the API server is not running"
        return TrayState("error", "Error", why)
    if load_error:
        return TrayState("error", "Error", load_error)
    loading = services.hub.loading_ids()
    if loading:
        return TrayState("loading", "Loading a model", ", ".join(loading))
    if not settings.api_enabled:
        return TrayState("off", "API off")
    if services.hub.is_busy() or services.request_log.in_flight > 0:
        return TrayState("generating", "Generating")
    return TrayState("idle", "API on")


def current_model_label(services: Services) -> str:
    """The active model's label, or a hint that none is picked."""
    s = services.settings.current
    row = s.row(s.active_model)
    return row.label if row else "none selected"


def status_line(services: Services, state: TrayState) -> str:
    """One line for the menu: state · URL · requests served · model."""
    url = services.server.base_url if services.server.running else "not listening"
    served = services.request_log.served
    return (f"{state.text} · {url} · {served} request{'s' if served != 1 else ''} · "
            f"model: {current_model_label(services)}")


def tooltip(services: Services, state: TrayState) -> str:
    """The tray tooltip: state, base URL, and the detail when there is one."""
    lines = [f"Tater Desktop: {state.text}"]
    if services.server.running:
        lines.append(services.server.base_url)
    if state.detail:
        lines.append(state.detail)
    return "\n".join(lines)
