"""Start Xvfb (+ trayer) for the real-tray tests and screenshots; stop them afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

NEEDED = ("Xvfb", "trayer", "xdotool", "import", "xdpyinfo", "dbus-run-session")


def missing_tools() -> list[str]:
    return [t for t in NEEDED if shutil.which(t) is None]


@contextmanager
def xvfb(with_tray: bool = True, size: str = "1024x768x24") -> Iterator[dict[str, str]]:
    """Yield an environment with DISPLAY set to a fresh Xvfb (and trayer in the top right)."""
    missing = missing_tools()
    if missing:
        raise RuntimeError("missing tools for the real-tray test: " + ", ".join(missing) +
                           " (apt-get install --no-install-recommends xvfb xauth trayer xdotool "
                           "x11-utils imagemagick dbus dbus-x11)")
    read_fd, write_fd = os.pipe()
    xvfb_proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", size,
                                  "-nolisten", "tcp"], pass_fds=(write_fd,),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    procs = [xvfb_proc]
    try:
        with os.fdopen(read_fd) as f:
            number = f.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        env = {**os.environ, "DISPLAY": f":{number}", "QT_QPA_PLATFORM": "xcb"}
        env.pop("WAYLAND_DISPLAY", None)
        if with_tray:
            procs.append(subprocess.Popen(
                ["trayer", "--edge", "top", "--align", "right", "--widthtype", "pixel", "--width", "200",
                 "--height", "32", "--SetDockType", "true", "--tint", "0x303030", "--alpha", "0",
                 "--transparent", "true"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(0.5)
        yield env
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
