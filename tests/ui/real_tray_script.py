"""Run the real tray app on an X display with a tray host and drive it with xdotool.

Started by tests/ui/test_real_tray.py in its own process (xcb must not meet the offscreen
QApplication of the other tests).  Prints one JSON line with what it saw; exit 0 = all good.
Usage: python tests/ui/real_tray_script.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx
import keyring
from PySide6.QtCore import QRect
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from tests.conftest import MemoryKeyring
from tests.ui.x_driver import click, pump, screenshot


def icon_pixels_differ(shot: Path, rect: QRect) -> tuple[int, int]:
    """(pixels in the icon rect unlike the panel background, distinct colours there)."""
    img = QImage(str(shot))
    background = img.pixel(max(rect.left() - 3, 0), rect.center().y())
    differ, colours = 0, set()
    for x in range(rect.left(), rect.right() + 1):
        for y in range(rect.top(), rect.bottom() + 1):
            p = img.pixel(x, y)
            colours.add(p)
            differ += p != background
    return differ, len(colours)


def main(out_dir: Path) -> int:
    keyring.set_keyring(MemoryKeyring())
    os.environ["TATER_CONFIG_DIR"] = str(out_dir / "config")
    from app.services import build_services
    from app.ui.shell import TrayApp

    app = QApplication([sys.argv[0]])
    app.setQuitOnLastWindowClosed(False)
    result: dict[str, object] = {"platform": app.platformName()}
    result["tray_available"] = pump(app, QSystemTrayIcon.isSystemTrayAvailable, 10)
    services = build_services(out_dir / "config", env={})
    shell = TrayApp(services)
    shell.tray.show()
    assert shell.controller.start_server(host="127.0.0.1", port=0)
    url = services.server.base_url
    icon = shell.tray.icon
    embedded = pump(app, lambda: icon.geometry().x() > 0 or icon.geometry().y() > 0, 10)
    pump(app, lambda: False, 0.5)  # let the panel paint
    rect = icon.geometry()
    result.update(embedded=embedded, geometry=[rect.x(), rect.y(), rect.width(), rect.height()])
    shot = out_dir / "tray.png"
    screenshot(shot)
    differ, colours = icon_pixels_differ(shot, rect)
    result.update(icon_pixels_differ=differ, icon_colours=colours)
    result["before_click"] = httpx.get(f"{url}/models", timeout=5).status_code
    cx, cy = rect.center().x(), rect.center().y()
    click(cx, cy, 1)
    result["enabled_by_click"] = pump(app, lambda: services.settings.current.api_enabled, 5)
    key = services.keys.get()
    result["after_click"] = httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {key}"},
                                      timeout=5).status_code
    result["tooltip"] = icon.toolTip()
    click(cx, cy, 3)
    result["menu_opened"] = pump(app, shell.menu.isVisible, 5)
    if result["menu_opened"]:
        pump(app, lambda: False, 0.3)
        screenshot(out_dir / "menu.png")
        shell.menu.hide()
    shell.quitter.quit()
    result["server_stopped"] = not services.server.running
    print(json.dumps(result), flush=True)
    ok = (result["tray_available"] and embedded and differ > 20 and result["before_click"] == 404
          and result["enabled_by_click"] and result["after_click"] == 200 and result["menu_opened"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
