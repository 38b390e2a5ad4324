"""The MCP servers Hydra may use: a Verba source for the registry, on a loop of its own.

The MCP SDK is imported on the first connection only.  Every connection lives on one private
event loop thread, so a server that hangs or floods can
never stall the API server's loop: callers from any loop await a future with their own time
limit.  Servers start on the first call (or on :meth:`McpClients.refresh`), stop after
``mcp.idle_stop_seconds`` unused, and all stop on :meth:`McpClients.close` (quit).

A server's tool list is remembered in ``<config dir>/mcp_tools.json`` whenever it starts, so
its tools are Verbas (off until enabled) even while the server is not running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from app.mcp.config import McpServerConfig, McpSettings, secret_entry
from app.mcp.status import McpCallFailed, ServerState
from app.mcp.tool_verbas import result_from_mcp, tool_verba
from app.verbas.base import Verba, VerbaResult

if TYPE_CHECKING:
    from app.keystore import SecretStore
    from app.mcp.connection import McpConnection
    from app.settings import Settings, SettingsStore

log = logging.getLogger(__name__)

TOOLS_CACHE_FILE = "mcp_tools.json"
IDLE_CHECK_SECONDS = 5.0
T = TypeVar("T")


class McpClients:
    """Connections to the configured MCP servers, and their tools as Verbas."""

    def __init__(self, settings: SettingsStore, secrets: SecretStore | None) -> None:
        self.settings = settings
        self.secrets = secrets
        self.cache_path = Path(settings.config_dir) / TOOLS_CACHE_FILE
        self.problems: dict[str, str] = {}  # "server/tool" -> why it is not offered
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connections: dict[str, McpConnection] = {}
        self._tools: dict[str, list[dict[str, Any]]] = self._read_cache()
        self._verbas: dict[str, list[Verba]] = {}
        self._closed = False
        self._idle_task: asyncio.Task[None] | None = None
        self._unsubscribe = settings.subscribe(self._on_settings)

    # -- the Verba source ----------------------------------------------------------------
    def verbas(self) -> list[Verba]:
        """One Verba per known tool of every enabled server."""
        out: list[Verba] = []
        with self._lock:
            for config in self._config().servers:
                if not config.enabled:
                    continue
                if config.name not in self._verbas:
                    self._verbas[config.name] = self._build_verbas(config.name)
                out.extend(self._verbas[config.name])
        return out

    def _build_verbas(self, server: str) -> list[Verba]:
        built: list[Verba] = []
        for key in [k for k in self.problems if k.startswith(f"{server}/")]:
            del self.problems[key]
        taken = {v.id for other, vs in self._verbas.items() if other != server for v in vs}
        for tool in self._tools.get(server, []):
            try:
                v = tool_verba(server, tool, self.call)
            except ValueError as exc:
                self.problems[f"{server}/{tool.get('name')}"] = str(exc)
                continue
            if v.id in taken:
                self.problems[f"{server}/{tool.get('name')}"] = f"its Verba id {v.id} is taken"
                continue
            taken.add(v.id)
            built.append(v)
        return built

    # -- calls (from any event loop) -----------------------------------------------------
    async def call(self, server: str, tool: str, arguments: dict[str, Any],
                   timeout: float) -> VerbaResult:
        """Call ``tool`` on ``server`` within ``timeout``; a failure is a VerbaResult, not a raise."""
        config = self._config().server(server)
        if config is None or not config.enabled:
            return VerbaResult.failure(f"the MCP server {server!r} is not configured or is off")
        # Leave a moment so that our own message, not the caller's cut-off, reports a hang.
        inner = max(timeout - min(0.5, timeout * 0.1), 0.05)
        future = self._submit(self._call(config, tool, arguments, inner))
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise

    async def _call(self, config: McpServerConfig, tool: str, arguments: dict[str, Any],
                    timeout: float) -> VerbaResult:
        conn = await self._connection(config)
        try:
            result = await conn.call(tool, arguments, timeout)
        except McpCallFailed as exc:
            return VerbaResult.failure(str(exc))
        finally:
            self._remember_tools(conn)
        return result_from_mcp(config.name, tool, result)

    async def _connection(self, config: McpServerConfig) -> McpConnection:
        conn = self._connections.get(config.name)
        if conn is not None and conn.config != config:
            await conn.stop()
            conn = None
        if conn is None:
            from app.mcp.connection import McpConnection  # the SDK loads on first use (~1 s)

            conn = self._connections[config.name] = McpConnection(config, self._secret_values(config))
        return conn

    def _secret_values(self, config: McpServerConfig) -> dict[str, str]:
        kind = "header" if config.transport == "http" else "env"
        values: dict[str, str] = {}
        for name in config.secret_names:
            try:
                value = self.secrets.get(secret_entry(config.name, kind, name)) if self.secrets else None
            except Exception as exc:  # keyring unavailable: the server will say what is missing
                log.warning("cannot read the %s secret of MCP server %s: %s", name, config.name, exc)
                value = None
            if value:
                values[name] = value
        return values

    # -- for the UI (blocking; call from a worker thread) ---------------------------------
    def refresh(self, name: str, timeout: float = 60.0) -> ServerState:
        """Start ``name`` (if needed) and list its tools again."""
        config = self._config().server(name)
        if config is None:
            raise KeyError(name)

        async def run() -> ServerState:
            conn = await self._connection(config)
            if conn.alive:
                await conn.stop()
            conn.in_flight += 1  # not idle while it starts
            try:
                await conn.ensure(timeout)
            except McpCallFailed as exc:
                conn.state, conn.error = "failed", str(exc)
            finally:
                conn.in_flight -= 1
                conn.last_used = time.monotonic()
            self._remember_tools(conn)
            return conn.snapshot()

        return self._submit(run()).result(timeout + 15)

    def states(self) -> list[ServerState]:
        """Every configured server with its state and known tools."""
        out = []
        for config in self._config().servers:
            conn = self._connections.get(config.name)
            if conn is not None:
                state = conn.snapshot()
                if not state.tools:
                    state.tools = [str(t.get("name")) for t in self._tools.get(config.name, [])]
            else:
                state = ServerState(config.name, "stopped" if config.enabled else "off", None,
                                    [str(t.get("name")) for t in self._tools.get(config.name, [])])
            out.append(state)
        return out

    def stop(self, name: str) -> None:
        """Stop one server now (blocking)."""
        conn = self._connections.get(name)
        if conn is not None and self._loop is not None:
            self._submit(conn.stop()).result(20)

    def close(self) -> None:
        """Stop every server and the loop (on quit)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._unsubscribe()
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def stop_all() -> None:
            await asyncio.gather(*(c.stop() for c in self._connections.values()),
                                 return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(stop_all(), loop).result(30)
        except Exception:
            log.warning("MCP servers did not all stop cleanly", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    # -- plumbing ------------------------------------------------------------------------
    def _config(self) -> McpSettings:
        return self.settings.current.mcp

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        with self._lock:
            if self._closed:
                coro.close()
                raise RuntimeError("the MCP clients are closed")
            if self._loop is None:
                self._start_loop()
            assert self._loop is not None
            return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _start_loop(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            self._idle_task = loop.create_task(self._stop_idle(), name="mcp-idle")
            try:
                loop.run_forever()
            finally:
                for task in asyncio.all_tasks(loop):
                    task.cancel()
                loop.run_until_complete(asyncio.sleep(0))
                loop.close()

        self._thread = threading.Thread(target=run, name="tater-mcp-clients", daemon=True)
        self._thread.start()
        ready.wait(10)
        self._loop = loop

    async def _stop_idle(self) -> None:
        while True:
            idle = self._config().idle_stop_seconds
            await asyncio.sleep(min(IDLE_CHECK_SECONDS, max(idle / 2, 0.05)))
            now = time.monotonic()
            for conn in list(self._connections.values()):
                if (conn.alive and conn.state == "running" and conn.in_flight == 0
                        and now - conn.last_used > idle):
                    log.info("stopping idle MCP server %s", conn.config.name)
                    await conn.stop()

    def _remember_tools(self, conn: McpConnection) -> None:
        name = conn.config.name
        if not conn.tools or conn.tools == self._tools.get(name):
            return
        with self._lock:
            self._tools[name] = list(conn.tools)
            self._verbas.pop(name, None)
            self._write_cache()

    def _read_cache(self) -> dict[str, list[dict[str, Any]]]:
        try:
            data = json.loads(self.cache_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, list)}

    def _write_cache(self) -> None:
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._tools, indent=1), encoding="utf-8")
            tmp.replace(self.cache_path)
        except OSError as exc:
            log.warning("cannot save the MCP tool list: %s", exc)

    def _on_settings(self, old: Settings, new: Settings) -> None:
        if old.mcp.servers == new.mcp.servers:
            return
        kept = {s.name: s for s in new.mcp.servers}
        with self._lock:
            gone = [name for name in self._tools if name not in kept]
            for name in gone:
                del self._tools[name]
            if gone:
                self._write_cache()
            self._verbas.clear()
            if self._loop is None:
                return
            for name, conn in list(self._connections.items()):
                if kept.get(name) != conn.config:
                    self._connections.pop(name)
                    asyncio.run_coroutine_threadsafe(conn.stop(), self._loop)
