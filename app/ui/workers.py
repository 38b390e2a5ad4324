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
    progress = Signal(int, object)  # (token, progress report)

    def __init__(self) -> None:
        super().__init__()
        self.pending: dict[int, Done] = {}
        self.listeners: dict[int, Callable[[Any], None]] = {}
        self.tokens = itertools.count(1)
        self.done.connect(self._deliver, Qt.ConnectionType.QueuedConnection)
        self.progress.connect(self._report, Qt.ConnectionType.QueuedConnection)

    @Slot(int, object)
    def _report(self, token: int, report: Any) -> None:
        listener = self.listeners.get(token)
        if listener is not None:
            listener(report)

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


def run_in_background(work: Callable[..., Any], on_done: Done, context: QObject | None = None,
                      *, on_progress: Callable[[Any], None] | None = None) -> threading.Thread:
    """Call ``work()`` on a daemon thread, then ``on_done(result, error)`` on the Qt thread.

    ``context``: when given and already deleted by then, ``on_done`` is skipped.
    ``on_progress``: ``work`` is called as ``work(report)``; each ``report(value)`` from the
    thread reaches ``on_progress(value)`` on the Qt thread (none after ``on_done``).
    """
    relay = _get_relay()
    ref = weakref.ref(context) if context is not None else None
    token = next(relay.tokens)

    def deliver(result: Any, error: BaseException | None) -> None:
        relay.listeners.pop(token, None)
        if ref is not None:
            alive = ref()
            if alive is None:
                return
            try:
                alive.objectName()
            except RuntimeError:  # the widget that asked is gone
                return
        on_done(result, error)

    relay.pending[token] = deliver
    if on_progress is not None:
        relay.listeners[token] = on_progress

    def body() -> None:
        try:
            result = work() if on_progress is None else work(
                lambda value: relay.progress.emit(token, value))
        except BaseException as exc:  # handed to the UI, which shows it
            relay.done.emit(token, None, exc)
            return
        relay.done.emit(token, result, None)

    thread = threading.Thread(target=body, name="tater-ui-work", daemon=True)
    thread.start()
    return thread
