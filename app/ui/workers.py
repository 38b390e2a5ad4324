"""Run blocking work (HTTP probes, discovery) off the Qt thread and get the result back on it."""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, Qt, Signal, Slot

Done = Callable[[Any, BaseException | None], None]


class _Relay(QObject):
    """One long-lived object in the GUI thread; worker threads only emit its signal.

    Workers never hold Qt objects or callbacks (only a token): a Python wrapper of a QObject
    released on a worker thread is deleted there by shiboken, which crashes Qt.
    """

    done = Signal(int, object, object)  # (token, result, exception)

    def __init__(self) -> None:
        super().__init__()
        self.pending: dict[int, Done] = {}
        self.tokens = itertools.count(1)
        self.done.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    @Slot(int, object, object)
    def _deliver(self, token: int, result: Any, error: BaseException | None) -> None:
        callback = self.pending.pop(token, None)
        if callback is not None:
            callback(result, error)


_relay: _Relay | None = None


def _get_relay() -> _Relay:
    global _relay
    if _relay is None:
        _relay = _Relay()
        app = QCoreApplication.instance()
        if app is not None:
            _relay.moveToThread(app.thread())
    return _relay


def run_in_background(work: Callable[[], Any], on_done: Done,
                      context: QObject | None = None) -> threading.Thread:
    """Call ``work()`` on a daemon thread, then ``on_done(result, error)`` on the Qt thread.

    ``context``: when given and already deleted by then, ``on_done`` is skipped.
    """
    relay = _get_relay()
    ref = weakref.ref(context) if context is not None else None

    def deliver(result: Any, error: BaseException | None) -> None:
        if ref is not None:
            alive = ref()
            if alive is None:
                return
            try:
                alive.objectName()
            except RuntimeError:  # the widget that asked is gone
                return
        on_done(result, error)

    token = next(relay.tokens)
    relay.pending[token] = deliver

    def body() -> None:
        try:
            result = work()
        except BaseException as exc:  # handed to the UI, which shows it
            relay.done.emit(token, None, exc)
            return
        relay.done.emit(token, result, None)

    thread = threading.Thread(target=body, name="tater-ui-work", daemon=True)
    thread.start()
    return thread
