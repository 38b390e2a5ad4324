"""One long-lived thread for a runtime whose per-thread state must outlive every call.

MLX (0.32) keeps its compile cache, default stream and random state per thread.  A thread
that ran compiled MLX code and then exits tears its cache down from a thread-exit handler,
and the main thread's cache is torn down after the interpreter has finalized; either can
kill the process as it exits (SIGSEGV/SIGABRT: ml-explore/mlx#4327, #4347).  Running every
MLX call on one daemon thread that lives as long as the process avoids both: a daemon
thread's thread-local destructors never run, and no other thread touches MLX.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


_STOP = object()


class OwnerThread:
    """Runs jobs one after another on a single daemon thread, started on first use.

    With ``idle_exit`` (seconds) the thread ends after that long without work and the next
    job starts a new one; without it the thread lives as long as the process.
    """

    def __init__(self, name: str, *, idle_exit: float | None = None) -> None:
        self.name = name
        self.idle_exit = idle_exit
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._here = threading.local()
        self._running = 0

    def is_current(self) -> bool:
        """Whether the caller is running on this owner's thread."""
        return getattr(self._here, "owner", False)

    def idle(self) -> bool:
        """No job is running or waiting."""
        with self._lock:
            return not self._running and self._jobs.empty()

    def spawn(self, job: Callable[[], None]) -> None:
        """Queue ``job``; it runs after the jobs queued before it."""
        with self._lock:
            if self._thread is None:
                self._jobs = queue.SimpleQueue()
                self._thread = threading.Thread(target=self._run, args=(self._jobs,), name=self.name,
                                                daemon=True)
                self._thread.start()
            self._jobs.put(job)

    def started(self) -> bool:
        """Whether the thread is running (it starts on the first job)."""
        with self._lock:
            return self._thread is not None

    def call(self, fn: Callable[..., T], *args: object, timeout: float | None = None) -> T:
        """``fn(*args)`` on this thread (inline when already on it); its result or exception.

        With ``timeout`` (seconds), :class:`TimeoutError` when it has not finished by then.
        """
        if self.is_current():
            return fn(*args)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)

        self.spawn(job)
        return future.result(timeout)

    def stop(self) -> None:
        """End the thread once the jobs already queued have run; a later job starts a new one."""
        with self._lock:
            if self._thread is not None:
                self._jobs.put(_STOP)
                self._thread = None

    def _run(self, jobs: queue.SimpleQueue[Any]) -> None:
        self._here.owner = True
        me = threading.current_thread()
        while True:
            try:
                job = jobs.get(timeout=self.idle_exit)
            except queue.Empty:
                with self._lock:  # spawn() puts under this lock: nothing can slip in unseen
                    if jobs.empty():
                        if self._thread is me:
                            self._thread = None
                        return
                continue
            if job is _STOP:
                return
            with self._lock:
                self._running += 1
            try:
                job()
            except BaseException:  # a job must never end the thread: its state would go with it
                log.exception("a job on the %s thread failed", self.name)
            finally:
                with self._lock:
                    self._running -= 1
