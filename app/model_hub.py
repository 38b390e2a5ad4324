"""The model hub: owns loaded models and shares them between the server thread and the UI.

- A model loads once: concurrent first requests wait for the same load (a shared Future).
- Loads run on a worker thread; the asyncio side awaits them without blocking its loop.
- Memory budget: at most ``memory.max_loaded_models`` local models stay loaded; the least
  recently used idle one is evicted first, and a model that is generating is never evicted.
  Remote rows cost nothing.  Idle models unload after ``memory.idle_unload_minutes``.
- Listeners get :class:`HubEvent` objects (loading, loaded, failed, unloaded) for the UI.
- Watchdog: twice a second the hub asks each loaded model whether a call (or its batch
  engine's step) is stuck past ``limits.token_timeout_seconds``; a stuck model is abandoned
  (its requests get 503, its thread is left to finish in the runtime whenever it can) and a
  fresh instance is loaded.
- Closing never waits more than :data:`CLOSE_TIMEOUT` seconds for a model to let go.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.memory_estimate import check_row_fits
from app.providers import UnknownProvider, get_provider, provider_class
from app.providers.base import ChatModel, ModelLoadError, ProviderError
from app.settings import ModelRow, SettingsStore

log = logging.getLogger(__name__)

WATCHDOG_INTERVAL = 0.5
CLOSE_TIMEOUT = 2.0
"""Seconds :meth:`ModelHub.close` waits for the models to free themselves (at shutdown)."""


@dataclass(frozen=True)
class HubEvent:
    """Something the UI may show: ``kind`` is loading | loaded | failed | unloaded."""

    kind: str
    model_id: str
    message: str = ""
    seconds: float | None = None


@dataclass
class _Entry:
    row: ModelRow
    model: ChatModel
    local: bool
    last_used: float


@dataclass(frozen=True)
class ModelState:
    """What ``GET /v1/models`` tells of a row: whether it is in memory, and its context window
    in tokens (the loaded model's, else what loading it would give; None when unknown)."""

    loaded: bool
    context_length: int | None


def _fingerprint(row: ModelRow) -> str:
    """A row's identity for cached facts: an edited row (source, options) is a new one."""
    return row.model_dump_json()


class ModelNotConfigured(ProviderError):
    """No row with that id."""

    status = 404
    code = "model_not_found"
    error_type = "invalid_request_error"


class ModelHub:
    """Loads, shares, evicts and unloads models.  Safe to use from any thread."""

    def __init__(self, settings: SettingsStore, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._lock = threading.RLock()
        self._loaded: dict[str, _Entry] = {}
        self._loading: dict[str, concurrent.futures.Future[ChatModel]] = {}
        self._contexts: dict[str, tuple[str, int | None]] = {}  # row id -> (fingerprint, context)
        self._listeners: list[Callable[[HubEvent], None]] = []
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="tater-load")
        self._stopped = threading.Event()
        self._janitor: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self.janitor_interval = 30.0  # seconds between idle sweeps

    # -- events ---------------------------------------------------------------------
    def subscribe(self, listener: Callable[[HubEvent], None]) -> Callable[[], None]:
        """Call ``listener(event)`` (from any thread) on load/unload; returns unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: HubEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("hub listener failed")

    # -- queries ----------------------------------------------------------------------
    def loaded_ids(self) -> list[str]:
        """Ids of the models in memory, most recently used last."""
        with self._lock:
            return [k for k, _ in sorted(self._loaded.items(), key=lambda kv: kv[1].last_used)]

    def loading_ids(self) -> list[str]:
        with self._lock:
            return list(self._loading)

    def known_state(self, row: ModelRow) -> ModelState | None:
        """The row's state from memory only (never reads a file): None when its context length
        has not been learnt yet (see :meth:`state`)."""
        with self._lock:
            entry = self._loaded.get(row.id)
            if entry is not None:
                return ModelState(True, entry.model.context_length)
            seen = self._contexts.get(row.id)
        if seen is not None and seen[0] == _fingerprint(row):
            return ModelState(False, seen[1])
        return None

    def state(self, row: ModelRow) -> ModelState:
        """The row's state; learns an unloaded row's context once from its options and file
        headers (blocking: call it off the event loop), then answers from memory."""
        known = self.known_state(row)
        if known is not None:
            return known
        try:
            context = provider_class(row.provider).planned_context_length(row)
        except UnknownProvider:
            context = None
        with self._lock:
            self._contexts[row.id] = (_fingerprint(row), context)
        return ModelState(False, context)

    def row(self, model_id: str) -> ModelRow | None:
        """The configured row with this id, or None."""
        return self._settings.current.row(model_id)

    def loaded_model(self, model_id: str) -> ChatModel | None:
        """The model if it is loaded now (never starts a load, never counts as a use)."""
        with self._lock:
            entry = self._loaded.get(model_id)
            return entry.model if entry is not None else None

    def is_busy(self) -> bool:
        """True while any loaded model is generating."""
        with self._lock:
            return any(e.model.busy for e in self._loaded.values())

    # -- loading ----------------------------------------------------------------------
    def load(self, model_id: str) -> concurrent.futures.Future[ChatModel]:
        """Start (or join) loading ``model_id``; the Future resolves to the model."""
        with self._lock:
            entry = self._loaded.get(model_id)
            if entry is not None:
                entry.last_used = self._clock()
                done: concurrent.futures.Future[ChatModel] = concurrent.futures.Future()
                done.set_result(entry.model)
                return done
            pending = self._loading.get(model_id)
            if pending is not None:
                return pending
            row = self._settings.current.row(model_id)
            if row is None:
                raise ModelNotConfigured(f"The model '{model_id}' does not exist: it is not one of the "
                                         "configured models (see GET /v1/models).")
            future: concurrent.futures.Future[ChatModel] = concurrent.futures.Future()
            self._loading[model_id] = future
        self._emit(HubEvent("loading", model_id, f"Loading {row.label}…"))
        self._pool.submit(self._load_now, row, future)
        self._start_watchdog()
        return future

    async def acquire(self, model_id: str) -> ChatModel:
        """The loaded model (loading it if needed), without blocking the event loop."""
        future = self.load(model_id)
        model = await asyncio.wrap_future(future)
        with self._lock:
            entry = self._loaded.get(model_id)
            if entry is not None:
                entry.last_used = self._clock()
            over = self._over_budget()
        if over:  # a model that was generating when room was needed may be idle now
            await asyncio.to_thread(self._make_room, keep=model_id)
        return model

    def _over_budget(self) -> bool:
        local = sum(1 for e in self._loaded.values() if e.local)
        return local > self._settings.current.memory.max_loaded_models

    def _load_now(self, row: ModelRow, future: concurrent.futures.Future[ChatModel]) -> None:
        started = time.perf_counter()
        evicted: list[str] = []
        try:
            try:
                provider = get_provider(row.provider)
            except UnknownProvider as exc:
                raise ModelLoadError(str(exc)) from None
            missing = provider.available()
            if missing:
                raise ModelLoadError(missing)
            provider.parse_options(row)  # unknown or bad options: say which, before evicting anyone
            provider.attach(self)  # a pool reaches its member rows through the hub
            if provider.local:
                evicted = self._make_room(keep=row.id)
                check_row_fits(row)  # after evictions: refuse with the numbers, not crash
            model = provider.load(row)
        except BaseException as exc:
            message = exc.message if isinstance(exc, ProviderError) else f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._loading.pop(row.id, None)
            log.warning("loading %s failed: %s", row.id, message)
            err = exc if isinstance(exc, ProviderError) else ModelLoadError(
                f"Could not load '{row.id}': {message}")
            self._emit(HubEvent("failed", row.id, message))  # before the waiters wake: in order
            future.set_exception(err)
            for model_id in evicted:  # a failed load must not cost the user the model that worked
                with contextlib.suppress(ProviderError):  # (its row may be gone by now)
                    self.load(model_id)
            return
        seconds = time.perf_counter() - started
        with self._lock:
            self._loading.pop(row.id, None)
            self._loaded[row.id] = _Entry(row, model, provider.local, self._clock())
            self._contexts[row.id] = (_fingerprint(row), model.context_length)
        log.info("loaded %s in %.2fs", row.id, seconds)
        self._emit(HubEvent("loaded", row.id, f"{row.label} is ready", seconds))
        future.set_result(model)  # after the event: a waiter never sees the model before it
        if provider.local:  # a load that raced another may leave us over budget
            self._make_room(keep=row.id)

    def _make_room(self, *, keep: str) -> list[str]:
        """Evict idle local models (LRU first) until they fit the budget beside ``keep``.
        Returns the ids evicted."""
        budget = self._settings.current.memory.max_loaded_models
        evicted: list[str] = []
        while True:
            with self._lock:
                local = [e for k, e in self._loaded.items() if e.local and k != keep]
                if len(local) + 1 <= budget:
                    return evicted
                idle = [e for e in local if not e.model.busy]
                if not idle:
                    log.warning("memory budget exceeded: every loaded model is generating")
                    return evicted
                victim = min(idle, key=lambda e: e.last_used)
            if self.unload(victim.row.id, reason="evicted to stay within the memory budget"):
                evicted.append(victim.row.id)

    # -- unloading ----------------------------------------------------------------------
    def unload(self, model_id: str, *, reason: str = "unloaded") -> bool:
        """Drop a model (if loaded and not generating).  Returns whether it was unloaded."""
        with self._lock:
            entry = self._loaded.get(model_id)
            if entry is None or entry.model.busy:
                return False
            del self._loaded[model_id]
        _close_now(entry.model)
        self._emit(HubEvent("unloaded", model_id, reason))
        return True

    def unload_idle(self) -> list[str]:
        """Unload models idle for longer than the TTL (0 = never).  Returns their ids."""
        ttl = self._settings.current.memory.idle_unload_minutes * 60
        if ttl <= 0:
            return []
        now = self._clock()
        with self._lock:
            stale = [k for k, e in self._loaded.items() if not e.model.busy and now - e.last_used > ttl]
        return [k for k in stale if self.unload(k, reason="idle too long")]

    @property
    def janitor_running(self) -> bool:
        """Whether the idle-unload sweep runs (``start_janitor`` was called, ``close`` was not)."""
        return self._janitor is not None and self._janitor.is_alive()

    def start_janitor(self, interval: float | None = None) -> None:
        """Unload idle models in the background every ``interval`` seconds (default
        :attr:`janitor_interval`), until close."""
        if self._janitor is not None:
            return
        interval = self.janitor_interval if interval is None else interval

        def sweep() -> None:
            while not self._stopped.wait(interval):
                self.unload_idle()

        self._janitor = threading.Thread(target=sweep, name="tater-hub-janitor", daemon=True)
        self._janitor.start()

    # -- the watchdog ------------------------------------------------------------------
    def _start_watchdog(self) -> None:
        with self._lock:
            if self._watchdog is not None or self._stopped.is_set():
                return
            self._watchdog = threading.Thread(target=self._watch, name="tater-hub-watchdog", daemon=True)
            self._watchdog.start()

    def _watch(self) -> None:
        while not self._stopped.wait(WATCHDOG_INTERVAL):
            try:
                self.reset_stalled()
            except Exception:
                log.exception("the model watchdog failed")

    def reset_stalled(self) -> list[str]:
        """Abandon and reload every model stuck past the per-token time limit; their ids."""
        step = self._settings.current.limits.token_timeout_seconds
        with self._lock:
            entries = list(self._loaded.items())
        reset = []
        for model_id, entry in entries:
            if not entry.model.stalled(step):
                continue
            with self._lock:
                if self._loaded.get(model_id) is not entry:
                    continue
                del self._loaded[model_id]
            reason = (f"no progress within the time limit of {step:g} s per token, setting "
                      "limits.token_timeout_seconds, or still running after its client left")
            log.error("model %s is stuck: %s; abandoning it and loading a fresh instance", model_id, reason)
            entry.model.abandon(reason)
            self._emit(HubEvent("failed", model_id, f"{entry.row.label} got stuck and is being reloaded"))
            reset.append(model_id)
            if self._settings.current.row(model_id) is not None:
                self.load(model_id)
        return reset

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Unload everything (at shutdown), waiting at most ``timeout`` s for stuck runtimes."""
        self._stopped.set()
        with self._lock:
            entries = list(self._loaded.values())
            self._loaded.clear()
        closers = [threading.Thread(target=_close_now, args=(e.model,), daemon=True,
                                    name=f"tater-close {e.row.id}") for e in entries]
        for t in closers:
            t.start()
        deadline = time.monotonic() + timeout
        for t in closers:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                log.warning("a model did not let go within %.0f s (a runtime call is stuck); "
                            "leaving it behind", timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)


def _close_now(model: ChatModel) -> None:
    """Free a model from any thread; a failure is logged, never raised to the caller."""
    try:
        model.close_now()
    except Exception:
        log.exception("closing %s failed", model.model_id)
