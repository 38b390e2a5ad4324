"""The tray's key handling against a real keyring backend, in its own process.

Usage: python tests/ui/keyring_script.py secret|fail OUT_DIR   (prints one JSON line)
- secret: run under dbus-run-session with gnome-keyring unlocked (Secret Service).
- fail:   PYTHON_KEYRING_BACKEND=keyring.backends.fail.Keyring (no keyring at all).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import httpx  # noqa: E402
import keyring  # noqa: E402
from PySide6.QtGui import QGuiApplication  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402


def main(mode: str, out: Path) -> int:
    from app.services import build_services
    from app.ui.actions import Controller

    app = QApplication([sys.argv[0]])
    services = build_services(out / "config", env={})
    controller = Controller(services)
    controller.start_server(host="127.0.0.1", port=0)
    url = services.server.base_url
    backend = type(keyring.get_keyring())
    result: dict[str, object] = {"backend": f"{backend.__module__}.{backend.__name__}"}
    result["enabled"] = controller.set_api_enabled(True)
    app.processEvents()
    key = services.keys.get()
    result["notices"] = [f"{n.title}: {n.message}" for n in controller.notifier.history]
    if mode == "secret":
        result["stored"] = keyring.get_password("tater-desktop", "openai-api-key") == key and bool(key)
        result["clipboard"] = QGuiApplication.clipboard().text() == key
        result["http_with_key"] = httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {key}"},
                                            timeout=5).status_code
        shown = subprocess.run([sys.executable, "-m", "app", "key", "show"], cwd=ROOT,
                               capture_output=True, text=True, timeout=60)
        result["other_process_reads_same_key"] = shown.stdout.strip() == key
        new = services.keys.rotate()
        result["old_key_after_rotate"] = httpx.get(
            f"{url}/models", headers={"Authorization": f"Bearer {key}"}, timeout=5).status_code
        result["new_key_after_rotate"] = httpx.get(
            f"{url}/models", headers={"Authorization": f"Bearer {new}"}, timeout=5).status_code
        services.keys.clear()
        result["cleared"] = keyring.get_password("tater-desktop", "openai-api-key") is None
    else:
        result["key"] = key
        result["http_status"] = httpx.get(f"{url}/models", timeout=5).status_code
    services.shutdown()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2])))
