"""Render the tray menu, the status window, each settings page and the request log to
docs/screenshots/*.png.

Run from the repo root:  .venv/bin/python docs/make_screenshots.py
Without a display it re-runs itself under ``xvfb-run`` (apt-get install xvfb xauth).  It uses a
temporary config dir, an in-memory keyring and a tiny self-made model: nothing of yours is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
sys.path.insert(0, str(ROOT))


def _reexec_under_xvfb() -> int:
    if shutil.which("xvfb-run") is None:
        print("No display and no xvfb-run: apt-get install --no-install-recommends xvfb xauth",
              file=sys.stderr)
        return 2
    env = {**os.environ, "QT_QPA_PLATFORM": "xcb", "DBUS_SESSION_BUS_ADDRESS": "disabled:"}
    return subprocess.call(["xvfb-run", "-a", "-s", "-screen 0 1280x900x24", sys.executable,
                            str(Path(__file__).resolve())], env=env)


def _memory_keyring() -> None:
    import keyring
    import keyring.backend

    class Memory(keyring.backend.KeyringBackend):
        priority = 1  # type: ignore[assignment]

        def __init__(self) -> None:
            super().__init__()
            self.data: dict[tuple[str, str], str] = {}

        def get_password(self, service: str, username: str) -> str | None:
            return self.data.get((service, username))

        def set_password(self, service: str, username: str, password: str) -> None:
            self.data[(service, username)] = password

        def delete_password(self, service: str, username: str) -> None:
            self.data.pop((service, username), None)

    keyring.set_keyring(Memory())


def main() -> int:
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        return _reexec_under_xvfb()
    _memory_keyring()
    tmp = Path(tempfile.mkdtemp(prefix="tater-shots-"))
    os.environ["TATER_CONFIG_DIR"] = str(tmp / "config")
    os.environ["TATER_LOG_DIR"] = str(tmp / "logs")
    import time

    import httpx
    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QApplication

    from app.providers.llama_cpp import LlamaCppProvider
    from app.services import build_services
    from app.tinymodels.gguf_model import write_tiny_gguf
    from app.ui.shell import TrayApp

    app = QApplication([sys.argv[0]])
    app.setQuitOnLastWindowClosed(False)
    services = build_services(tmp / "config", env={})
    gguf = write_tiny_gguf(tmp / "models" / "tiny-chat.gguf")
    row = LlamaCppProvider.row_for(str(gguf)).model_copy(update={"display_name": "Tiny chat (GGUF)"})
    services.settings.update(models=[row], active_model=row.id,
                             limits={"allowed_origins": ["http://localhost:3000"]})
    shell = TrayApp(services)
    shell.tray.show()
    shell.controller.start_server(host="127.0.0.1", port=0)
    shell.controller.set_api_enabled(True)
    key, url = services.keys.get(), services.server.base_url
    for text in ("Hello!", "What is a potato?"):
        httpx.post(f"{url}/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=60,
                   json={"messages": [{"role": "user", "content": text}], "max_tokens": 12})
    httpx.get(f"{url}/models", headers={"Authorization": "Bearer wrong-key"}, timeout=10)
    settle(app)
    OUT.mkdir(parents=True, exist_ok=True)

    shell.menu.refresh()
    shell.menu.popup(QPoint(40, 40))
    settle(app)
    save(shell.menu.grab(), "menu")
    shell.menu.model_menu.popup(QPoint(40 + shell.menu.width(), 200))
    settle(app)
    save(shell.menu.model_menu.grab(), "menu-model")
    shell.menu.model_menu.hide()
    shell.menu.connect_menu.popup(QPoint(40 + shell.menu.width(), 120))
    settle(app)
    save(shell.menu.connect_menu.grab(), "menu-connect")
    shell.menu.connect_menu.hide()
    shell.menu.hide()

    shell.open_status()
    status = shell.status_window
    status.resize(640, 620)
    status.message_edit.setText("Hello! Who are you?")
    status.send()
    deadline = time.monotonic() + 60
    while status.sending and time.monotonic() < deadline:
        settle(app, 5)
    settle(app)
    save(status.grab(), "status")
    status.close()

    shell.open_settings()
    window = shell.settings_window
    window.page("hydra").persona.setPlainText("You are Tater, a friendly helper who answers briefly.")
    for page in window.pages:
        window.show_page(page.key)
        settle(app)
        save(window.grab(), f"settings-{page.key}")
    server_page = window.page("server")
    window.show_page("server")
    server_page.port.setText("80000")
    server_page.origins.setPlainText("localhost:3000")
    window.apply()
    settle(app)
    save(window.grab(), "settings-validation")
    window.reject()

    shell.open_request_log()
    settle(app)
    save(shell.request_log_window.grab(), "request-log")

    shell.open_get_models()  # what a first run opens: recommended models, the Hub, models on disk
    dialog = shell.get_models_dialog
    dialog.resize(820, 640)
    settle(app)
    save(dialog.grab(), "get-models")
    dialog.close()
    shell.quitter.quit()
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {len(list(OUT.glob('*.png')))} screenshots to {OUT}")
    return 0


def settle(app: object, rounds: int = 20) -> None:
    import time

    for _ in range(rounds):
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.02)


def save(pixmap: object, name: str) -> None:
    path = OUT / f"{name}.png"
    if not pixmap.save(str(path)):  # type: ignore[attr-defined]
        raise SystemExit(f"could not write {path}")


if __name__ == "__main__":
    sys.exit(main())
