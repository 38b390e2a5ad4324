"""The first-run walk-through, scripted: a real tray under Xvfb + trayer, clicked with xdotool.

Start → enable (left click) → add a model (right click ▸ Model ▸ Add model…) → it is the active
model → open the status window from the menu → Try it (click Send) → the request log rows.  The icon
state, tooltip and a screenshot are recorded at each step.  Started by
tests/ui/test_walkthrough_e2e.py in its own process; prints one JSON line.
Usage: python tests/ui/walkthrough_script.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import keyring
from PySide6.QtCore import QPoint
from PySide6.QtWidgets import QApplication, QMenu, QSystemTrayIcon, QWidget

from tests.conftest import MemoryKeyring
from tests.ui.x_driver import click, hover, pump, screenshot


def action_point(menu: QMenu, action: Any) -> QPoint:
    return menu.mapToGlobal(menu.actionGeometry(action).center())


def widget_point(widget: QWidget) -> QPoint:
    return widget.mapToGlobal(widget.rect().center())


def main(out_dir: Path) -> int:
    keyring.set_keyring(MemoryKeyring())
    os.environ["TATER_CONFIG_DIR"] = str(out_dir / "config")
    os.environ["XDG_DATA_HOME"] = str(out_dir / "xdg-data")
    os.environ["XDG_CONFIG_HOME"] = str(out_dir / "xdg-config")
    from app.server.runner import bind_socket
    from app.services import build_services
    from app.tinymodels.gguf_model import write_tiny_gguf
    from app.ui import dialogs
    from app.ui.shell import TrayApp

    gguf = write_tiny_gguf(out_dir / "models" / "tiny-chat.gguf")
    dialogs.pick_gguf_file = lambda _parent: str(gguf)  # the file dialog itself is Qt's, not ours
    app = QApplication([sys.argv[0]])
    app.setQuitOnLastWindowClosed(False)
    pump(app, QSystemTrayIcon.isSystemTrayAvailable, 10)
    services = build_services(out_dir / "config", env={})
    free = bind_socket("127.0.0.1", 0)
    port = free.getsockname()[1]
    free.close()
    services.settings.update(port=port)
    shell = TrayApp(services)
    steps: list[dict[str, Any]] = []
    log = services.request_log

    def step(name: str, **extra: Any) -> None:
        pump(app, lambda: False, 0.4)  # let the panel repaint
        shell.tray.refresh()
        shot = out_dir / f"{len(steps):02d}-{name}.png"
        screenshot(shot)
        steps.append({"step": name, "icon": shell.tray.shown_icon, "state": shell.tray.state.text,
                      "tooltip": shell.tray.icon.toolTip(), "requests": len(log.records()), **extra})

    shell.start()  # 1. start: the tray's own start path
    icon = shell.tray.icon
    embedded = pump(app, lambda: icon.geometry().x() > 0 or icon.geometry().y() > 0, 10)
    center = icon.geometry().center()
    step("start", embedded=embedded, listening=services.server.running)

    click(center.x(), center.y())  # 2. enable with a left click: key created, API on, no model
    pump(app, lambda: services.settings.current.api_enabled, 5)
    step("enabled", api_enabled=services.settings.current.api_enabled,
         key_made=bool(services.keys.get()))

    click(center.x(), center.y(), 3)  # 3. right click ▸ Model ▸ Add model…
    menu = shell.menu
    opened = pump(app, menu.isVisible, 5)
    model_point = action_point(menu, menu.model_menu.menuAction())
    hover(model_point.x(), model_point.y())
    sub_opened = pump(app, menu.model_menu.isVisible, 5)
    add = next(a for a in menu.model_menu.actions() if a.text() == "Add model…")
    add_point = action_point(menu.model_menu, add)
    hover(add_point.x(), model_point.y())  # along the parent row first, then down the submenu
    click(add_point.x(), add_point.y())
    s = services.settings.current
    added = pump(app, lambda: bool(services.settings.current.models), 5)
    loaded = pump(app, lambda: services.hub.loaded_ids() != [], 30)
    s = services.settings.current
    step("model_added", menu_opened=opened, submenu_opened=sub_opened, added=added, loaded=loaded,
         active=s.active_model, rows=[r.id for r in s.models])

    click(center.x(), center.y(), 3)  # 4. right click ▸ Status and Try it…
    pump(app, menu.isVisible, 5)
    status_point = action_point(menu, menu.status_window_action)
    click(status_point.x(), status_point.y())
    window_shown = pump(app, lambda: shell.status_window is not None and shell.status_window.isVisible(), 5)
    window = shell.status_window
    pump(app, lambda: False, 0.5)
    send_point = widget_point(window.send_button)
    click(send_point.x(), send_point.y())  # 5. Try it
    answered = pump(app, lambda: not window.sending and bool(window.answer.toPlainText())
                    and not window.answer.toPlainText().startswith("Asking"), 60)
    rows = [{"path": r.path, "status": r.status, "model": r.model, "app": r.app,
             "tokens_out": r.completion_tokens, "ttft_s": r.ttft_s} for r in log.records()]
    shot = out_dir / "status-window.png"
    screenshot(shot)
    step("tried", window_shown=window_shown, answered=answered, answer=window.answer.toPlainText(),
         rows=rows, window_apps=window.apps_label.text())

    shell.quitter.quit()
    result = {"platform": app.platformName(), "steps": steps, "stopped": not services.server.running}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
