"""``tater`` with no arguments: the tray app (one per user), or a clear word when there is no screen."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence

from app import APP_ID, APP_NAME

log = logging.getLogger(__name__)

EXIT_OK, EXIT_ERROR, EXIT_NO_DISPLAY = 0, 1, 2
NO_DISPLAY_MESSAGE = (f"{APP_NAME} needs a desktop session to show its tray icon, and none was found "
                      "(DISPLAY and WAYLAND_DISPLAY are not set).\n"
                      "To run the API without a screen, use:  tater serve")
NO_TRAY_MESSAGE = (f"{APP_NAME}: this desktop has no system tray. The API server runs anyway; "
                   "use the settings window (run `tater` again) or `tater serve` instead.")


def display_problem(env: Mapping[str, str] | None = None, platform: str = sys.platform) -> str | None:
    """Why Qt could not open a screen here, checked before Qt aborts with its own misleading text."""
    env = os.environ if env is None else env
    if platform in ("win32", "darwin"):
        return None
    qpa = env.get("QT_QPA_PLATFORM", "").strip().split(":")[0]
    if qpa and qpa not in ("xcb", "wayland", "wayland-egl"):
        return None  # offscreen, vnc, eglfs...: the user chose a platform on purpose
    if env.get("DISPLAY", "").strip() or env.get("WAYLAND_DISPLAY", "").strip():
        return None
    return NO_DISPLAY_MESSAGE


def run_tray(argv: Sequence[str] | None = None, command: str = "show") -> int:
    """Start the tray app; returns the exit code."""
    problem = display_problem()
    if problem:
        print(problem, file=sys.stderr)
        return EXIT_NO_DISPLAY

    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication, QSystemTrayIcon

    from app.paths import config_dir
    from app.resources import app_icon_path
    from app.services import build_services
    from app.ui.ipc import SingleInstance, send_to_running, server_name
    from app.ui.shell import TrayApp

    app = QApplication.instance() or QApplication(list(argv) if argv is not None else [sys.argv[0]])
    app.setApplicationName(APP_NAME)
    app.setDesktopFileName(APP_ID)
    app.setQuitOnLastWindowClosed(False)
    app.setWindowIcon(QIcon(str(app_icon_path(256))))

    name = server_name(config_dir())
    if send_to_running(name, command):
        what = {"settings": "settings window", "request-log": "request log",
                "status": "status window"}.get(command, "menu")
        print(f"{APP_NAME} is already running; asked it to show its {what}.", file=sys.stderr)
        return EXIT_OK

    services = build_services()
    shell = TrayApp(services)
    instance = SingleInstance(name, shell.handle_command, shell)
    instance.listen()
    shell.quitter.before.append(instance.close)
    if not QSystemTrayIcon.isSystemTrayAvailable():
        print(NO_TRAY_MESSAGE, file=sys.stderr)
    shell.start()
    if not QSystemTrayIcon.isSystemTrayAvailable():
        shell.open_settings()  # without a tray the window is the only way in
    _install_signal_quit(app, shell.quitter.quit)
    code = app.exec()
    shell.quitter.quit()  # no-op after Quit; covers the session ending
    return code


def _install_signal_quit(app: object, quit_fn: object) -> None:
    """Ctrl-C / SIGTERM quit cleanly (Qt's loop needs a timer tick to let Python see signals)."""
    import signal

    from PySide6.QtCore import QTimer

    def handler(_signum: int, _frame: object) -> None:
        QTimer.singleShot(0, quit_fn)  # type: ignore[arg-type]

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    tick = QTimer(app)  # type: ignore[arg-type]
    tick.timeout.connect(lambda: None)
    tick.start(300)
