"""A real tray under Xvfb + trayer started on a busy port: the panel must show the red error badge,
not the grey "off" potato.  Started by tests/ui/test_real_tray.py in its own process; prints one
JSON line.  Usage: python tests/ui/port_conflict_script.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import keyring
from PySide6.QtCore import QRect
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from tests.conftest import MemoryKeyring
from tests.ui.walkthrough_script import pump


def red_pixels(shot: Path, rect: QRect) -> int:
    """Pixels in ``rect`` of the badge's red (strong red, little green and blue)."""
    img = QImage(str(shot))
    count = 0
    for x in range(rect.left(), rect.right() + 1):
        for y in range(rect.top(), rect.bottom() + 1):
            c = QColor(img.pixel(x, y))
            count += c.red() > 170 and c.green() < 90 and c.blue() < 90
    return count


def main(out_dir: Path) -> int:
    keyring.set_keyring(MemoryKeyring())
    os.environ["TATER_CONFIG_DIR"] = str(out_dir / "config")
    os.environ["XDG_DATA_HOME"] = str(out_dir / "xdg-data")
    from app.server.runner import bind_socket
    from app.services import build_services
    from app.ui.shell import TrayApp

    app = QApplication([sys.argv[0]])
    app.setQuitOnLastWindowClosed(False)
    pump(app, QSystemTrayIcon.isSystemTrayAvailable, 10)
    busy = bind_socket("127.0.0.1", 0)
    services = build_services(out_dir / "config", env={})
    services.settings.update(port=busy.getsockname()[1])
    shell = TrayApp(services)
    shell.start()
    icon = shell.tray.icon
    embedded = pump(app, lambda: icon.geometry().x() > 0 or icon.geometry().y() > 0, 10)
    pump(app, lambda: False, 0.5)
    shot = out_dir / "port-conflict.png"
    subprocess.run(["import", "-window", "root", str(shot)], check=True, timeout=30)
    conflict_red = red_pixels(shot, icon.geometry())
    busy.close()  # the user frees the port and turns the API's listener on by saving the port again
    result = {"embedded": embedded, "listening": services.server.running, "conflict_red": conflict_red,
              "tooltip": icon.toolTip(), "notices": [n.title for n in shell.controller.notifier.history]}
    shell.quitter.quit()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
