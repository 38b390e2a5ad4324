"""One live connection to one MCP server, on the MCP event loop.

The SDK's :class:`mcp.Client` is entered in a task of its own (its task groups must be left in
the task that entered them) and kept open until :meth:`McpConnection.stop`.  A call that fails
in a way that may have broken the connection (the process exited, no answer in time, output
that is not JSON-RPC) stops it, so the next call starts the server afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from typing import Any

import httpx2
from mcp import Client, MCPError, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from app import __version__
from app.mcp.config import McpServerConfig
from app.mcp.status import McpCallFailed, ServerState

log = logging.getLogger(__name__)

GARBAGE_GRACE_SECONDS = 1.0
STDERR_TAIL_CHARS = 300


class McpConnection:
    """A server's process or HTTP session, started on demand."""

    def __init__(self, config: McpServerConfig, secret_values: dict[str, str]) -> None:
        self.config = config
        self.secret_values = secret_values
        self.state = "stopped"
        self.error: str | None = None
        self.tools: list[dict[str, Any]] = []
        self.last_used = time.monotonic()
        self.in_flight = 0
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[Client] | None = None
        self._stop: asyncio.Event | None = None
        self._garbage: asyncio.Event | None = None
        self._garbage_text = ""
        self._stderr: Any = None

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        """Running (or starting), and not asked to stop."""
        return (self._task is not None and not self._task.done()
                and not (self._stop is not None and self._stop.is_set()))

    async def ensure(self, timeout: float) -> Client:
        """The connected client, starting the server when needed (within ``timeout``)."""
        if not self.alive:
            if self._task is not None and not self._task.done():  # still stopping: let it end
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(self._task), timeout)
            self._launch()
        assert self._ready is not None
        try:
            return await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except TimeoutError:
            hint = self._stderr_hint()
            self.request_stop(f"did not start within {timeout:g} s")
            raise McpCallFailed(f"the MCP server {self.config.name!r} did not start within "
                                f"{timeout:g} s{hint}") from None
        except McpCallFailed:
            raise
        except Exception as exc:
            raise McpCallFailed(f"the MCP server {self.config.name!r} could not be started: "
                                f"{_describe(exc)}{self._stderr_hint()}") from None

    def _launch(self) -> None:
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._stop = asyncio.Event()
        self._garbage = asyncio.Event()
        self._garbage_text = ""
        self.state, self.error = "starting", None
        self._task = asyncio.create_task(self._serve(), name=f"mcp-{self.config.name}")

    async def _serve(self) -> None:
        assert self._ready is not None and self._stop is not None
        try:
            async with self._client() as client:
                listed = await client.list_tools(cache_mode="refresh")
                self.tools = [t.model_dump(by_alias=True, exclude_none=True, mode="json")
                              for t in listed.tools]
                self.state = "running"
                self._ready.set_result(client)
                await self._stop.wait()
            self.state = "stopped" if self.state != "failed" else "failed"
        except BaseException as exc:
            self.state, self.error = "failed", self.error or _describe(exc)
            if not self._ready.done():
                self._ready.set_exception(McpCallFailed(
                    f"the MCP server {self.config.name!r} could not be started: "
                    f"{_describe(exc)}{self._stderr_hint()}"))
                self._ready.exception()  # handed to whoever awaits it; never "unretrieved"
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.warning("MCP server %s stopped: %s", self.config.name, _describe(exc))
        finally:
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None

    def _client(self) -> Client:
        c = self.config
        common: dict[str, Any] = {"message_handler": self._on_message, "cache": None,
                                  "client_info": _client_info()}
        if c.transport == "http":
            headers = {**c.headers, **{k: v for k, v in self.secret_values.items()}}
            http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0))
            return Client(streamable_http_client(c.url, http_client=http), **common)
        env = {**c.env, **self.secret_values}
        # closed by _serve when the connection ends
        self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        params = StdioServerParameters(command=c.command, args=list(c.args), env=env or None,
                                       cwd=c.cwd or None)
        return Client(stdio_client(params, errlog=self._stderr), **common)

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception) and self._garbage is not None:
            self._garbage_text = _describe(message)
            self._garbage.set()

    def request_stop(self, why: str | None = None) -> None:
        """Ask the session to end (the process is stopped in the background); ``why``: failed."""
        if why:
            self.state, self.error = "failed", why
        if self._stop is not None:
            self._stop.set()
        if self._ready is not None and not self._ready.done() and self._task is not None:
            self._task.cancel()  # still connecting (e.g. stuck in the handshake): cannot see _stop

    async def stop(self, why: str | None = None) -> None:
        """End the session and wait until the process is gone."""
        self.request_stop(why)
        task = self._task
        if task is None or task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), 15)
        except TimeoutError:
            task.cancel()

    # -- calls -------------------------------------------------------------------------
    async def call(self, tool: str, arguments: dict[str, Any], timeout: float) -> Any:
        """``tools/call`` within ``timeout`` (starting the server counts); the CallToolResult."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.in_flight += 1
        self.last_used = time.monotonic()
        try:
            client = await self.ensure(timeout)
            return await self._call(client, tool, arguments, deadline)
        finally:
            self.in_flight -= 1
            self.last_used = time.monotonic()

    async def _call(self, client: Client, tool: str, arguments: dict[str, Any],
                    deadline: float) -> Any:
        name = self.config.name
        loop = asyncio.get_running_loop()
        assert self._garbage is not None
        call = asyncio.ensure_future(client.call_tool(tool, arguments))
        garbage = asyncio.ensure_future(self._garbage_then_grace())
        try:
            done, _ = await asyncio.wait({call, garbage}, timeout=max(deadline - loop.time(), 0),
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            garbage.cancel()
            if not call.done():
                call.cancel()  # not awaited: a hung server is stopped in the background
                call.add_done_callback(_consume)
        if call in done:
            try:
                return call.result()
            except MCPError as exc:
                if _connection_lost(exc):
                    hint = self._stderr_hint()
                    self.request_stop(f"the connection was lost during a call to {tool}")
                    raise McpCallFailed(f"the MCP server {name!r} stopped during the call to "
                                        f"{tool}{hint}; it will restart on the next call") from None
                raise McpCallFailed(f"{tool} on {name} failed: {exc.message}") from None
            except Exception as exc:  # garbage that parsed as JSON-RPC but not as a result
                self.request_stop(f"it sent an unusable answer to {tool}")
                raise McpCallFailed(f"the MCP server {name!r} sent an unusable answer to {tool}: "
                                    f"{_describe(exc)}") from None
        if garbage in done:
            text = self._garbage_text
            self.request_stop(f"it sent output that is not JSON-RPC ({text})")
            raise McpCallFailed(f"the MCP server {name!r} sent output that is not valid "
                                f"JSON-RPC during the call to {tool} ({text}); it was stopped "
                                "and will restart on the next call")
        self.request_stop(f"no answer to {tool} in time")
        raise McpCallFailed(f"the MCP server {name!r} did not answer the call to {tool} in time; "
                            "it was stopped and will restart on the next call")

    async def _garbage_then_grace(self) -> None:
        assert self._garbage is not None
        self._garbage.clear()
        await self._garbage.wait()
        await asyncio.sleep(GARBAGE_GRACE_SECONDS)  # a stray log line may precede the answer

    def _stderr_hint(self) -> str:
        f = self._stderr
        if f is None:
            return ""
        try:
            f.flush()
            f.seek(0)
            tail = f.read()[-STDERR_TAIL_CHARS:].strip()
        except (OSError, ValueError):
            return ""
        return f" (its last words: {tail.splitlines()[-1][:200]})" if tail else ""

    def snapshot(self) -> ServerState:
        return ServerState(self.config.name, self.state, self.error,
                           [str(t.get("name")) for t in self.tools])


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _connection_lost(exc: MCPError) -> bool:
    from mcp_types import CONNECTION_CLOSED

    return exc.code == CONNECTION_CLOSED


def _client_info() -> Any:
    from mcp import Implementation

    return Implementation(name="tater-hydra", version=__version__)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        inner = exc.exceptions[0] if exc.exceptions else exc
        return _describe(inner)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
