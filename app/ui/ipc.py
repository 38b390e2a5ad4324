"""One instance per user and config dir: a second launch asks the first to show itself.

The first instance listens on a QLocalServer; a later one connects, sends a one-line command
(``show`` or ``settings``) and exits instead of fighting over the port.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtNetwork import QLocalServer, QLocalSocket

log = logging.getLogger(__name__)

COMMANDS = ("show", "settings", "request-log", "status")


def server_name(config_dir: Path) -> str:
    """A socket name unique to this user and config dir (two profiles may run side by side)."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = "user"
    digest = hashlib.sha256(f"{user}\0{Path(config_dir).resolve()}".encode()).hexdigest()[:16]
    return f"tater-desktop-{digest}"


def send_to_running(name: str, command: str = "show", timeout_ms: int = 1000) -> bool:
    """Deliver ``command`` to a running instance; False when none answers."""
    sock = QLocalSocket()
    sock.connectToServer(name)
    if not sock.waitForConnected(timeout_ms):
        return False
    ok = sock.write((command + "\n").encode()) > 0
    sock.flush()  # writes what it can now; wait for the rest (False when nothing was left)
    while ok and sock.bytesToWrite() > 0:
        ok = sock.waitForBytesWritten(timeout_ms)
    sock.waitForReadyRead(timeout_ms)  # the first instance answers "ok" once it has read it
    sock.disconnectFromServer()
    return ok


class SingleInstance(QObject):
    """Listens for commands from later launches and hands them to ``on_command``."""

    def __init__(self, name: str, on_command: Callable[[str], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.on_command = on_command
        self.server = QLocalServer(self)
        self.server.newConnection.connect(self._accept)

    def listen(self) -> bool:
        """Start listening; removes a stale socket left by a crashed instance."""
        if self.server.listen(self.name):
            return True
        QLocalServer.removeServer(self.name)
        ok = self.server.listen(self.name)
        if not ok:
            log.warning("single-instance socket unavailable: %s", self.server.errorString())
        return ok

    def close(self) -> None:
        self.server.close()

    def _accept(self) -> None:
        while self.server.hasPendingConnections():
            sock = self.server.nextPendingConnection()
            sock.readyRead.connect(lambda s=sock: self._read(s))
            sock.disconnected.connect(sock.deleteLater)

    def _read(self, sock: QLocalSocket) -> None:
        while sock.canReadLine():
            command = bytes(sock.readLine().data()).decode(errors="replace").strip()
            sock.write(b"ok\n")
            sock.flush()
            if command in COMMANDS:
                self.on_command(command)
            else:
                log.warning("ignored single-instance command %r", command)
