"""Orderly shutdown: stop taking requests, let in-flight ones finish (or cancel them), free models."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from PySide6.QtWidgets import QApplication

from app.services import Services

log = logging.getLogger(__name__)


class Quitter:
    """Runs the shutdown steps once, in order, then quits the Qt event loop."""

    def __init__(self, services: Services, before: list[Callable[[], None]] | None = None) -> None:
        self.services = services
        self.before = before or []  # e.g. hide the icon, close the single-instance server
        self.done = False
        self.seconds: float | None = None

    def quit(self) -> None:
        """Stop everything and leave the event loop.  Safe to call twice."""
        if self.done:
            return
        self.done = True
        started = time.perf_counter()
        for step in self.before:
            try:
                step()
            except Exception:
                log.exception("shutdown step failed")
        try:
            self.services.shutdown()  # ApiServer.stop: graceful timeout, then cancels; hub.close
        except Exception:
            log.exception("stopping the services failed")
        self.seconds = time.perf_counter() - started
        log.info("stopped in %.2fs", self.seconds)
        app = QApplication.instance()
        if app is not None:
            app.quit()
