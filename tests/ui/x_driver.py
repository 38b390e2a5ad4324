"""Drive a real Qt app on an X display: pump its events until something holds, click and hover
with xdotool, take screenshots with ImageMagick (the real-tray scripts' shared moves)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QApplication


def pump(app: QApplication, cond: Callable[[], bool], timeout: float) -> bool:
    """Process Qt events until ``cond()`` holds or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents()
        if cond():
            return True
        time.sleep(0.02)
    app.processEvents()
    return cond()


def click(x: int, y: int, button: int = 1) -> None:
    """Move the pointer to (x, y) and click ``button`` (1 left, 3 right)."""
    subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", str(button)], check=True, timeout=10)


def hover(x: int, y: int) -> None:
    subprocess.run(["xdotool", "mousemove", str(x), str(y)], check=True, timeout=10)


def screenshot(path: Path) -> Path:
    """The whole screen as an image file."""
    subprocess.run(["import", "-window", "root", str(path)], check=True, timeout=30)
    return path
