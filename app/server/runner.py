"""Hypercorn on a worker thread: start, stop and restart the listener from any thread.

The socket is bound (and listening) before the thread starts, so a busy port is reported to
the caller at once and no connection is refused while the loop spins up.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

import h11
from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.protocol.h11 import H11Protocol
from quart import Quart

log = logging.getLogger(__name__)

# The access log never shows the query string (it may carry ?api_key=).
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(D)sus'


@dataclass(frozen=True)
class ServerTimeouts:
    """Hypercorn's timeouts, chosen deliberately.

    - ``head_seconds`` (Hypercorn ``keep_alive_timeout``): a connection must deliver a complete
      request head within this long of opening (or of its previous response); a client that
      sends half a request and stalls is dropped, and idle keep-alive connections close.
      Hypercorn 0.18 also keeps a connection the client already closed (CLOSE-WAIT, three
      tasks) until this timer fires, so it is short: local clients send a head in microseconds.
    - ``body_seconds`` (Quart ``BODY_TIMEOUT``): a body that stops arriving → 408.
    - ``read_timeout`` stays **off**: Hypercorn applies it to every socket read, including
      while a client quietly waits for a long generation, which would cut legitimate
      multi-minute replies.  A client that hangs up is seen at once (EOF), not via a timeout.
    - ``max_head_bytes`` (h11 ``max_incomplete_size``): a longer request head → 400.
    """

    head_seconds: float = 5.0
    body_seconds: float = 30.0
    max_head_bytes: int = 64 * 1024

    def apply(self, config: Config) -> None:
        config.keep_alive_timeout = self.head_seconds
        config.read_timeout = None
        config.h11_max_incomplete_size = self.max_head_bytes


PROTOCOL_ERRORS = {
    400: ("The HTTP request is malformed.", "malformed_request"),
    431: ("The request head is too large.", "request_header_too_large"),
    501: ("This request uses an HTTP feature the server does not support (e.g. a "
          "Transfer-Encoding other than chunked).", "not_implemented"),
}


def protocol_error_body(status: int) -> bytes:
    """The OpenAI error envelope for an HTTP-level error Hypercorn answers before the app runs."""
    message, code = PROTOCOL_ERRORS.get(status, ("The HTTP request could not be handled.", "http_error"))
    kind = "server_error" if status >= 500 and status != 501 else "invalid_request_error"
    return json.dumps({"error": {"message": message, "type": kind, "param": None,
                                 "code": code}}).encode()


def give_protocol_errors_a_body() -> None:
    """Make Hypercorn's own h11 error replies (malformed request, unsupported Transfer-Encoding,
    oversized head) carry an error envelope instead of an empty body (Hypercorn 0.18)."""
    if getattr(H11Protocol, "_tater_error_bodies", False):
        return

    async def send_error_response(self: H11Protocol, status_code: int) -> None:
        body = protocol_error_body(status_code)
        await self._send_h11_event(h11.Response(status_code=status_code, headers=[
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"), *self.config.response_headers("h11")]))
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())

    H11Protocol._send_error_response = send_error_response  # type: ignore[method-assign]
    H11Protocol._tater_error_bodies = True  # type: ignore[attr-defined]


class ServerStartError(Exception):
    """The listener could not start; ``str()`` is fit for the user."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0 = any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServerStartError(f"Port {port} on {host} is already in use. Stop the other program "
                                   "or pick another port (Settings ▸ Server, or --port).") from exc
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ServerStartError(f"Cannot listen on {host}: no such address on this machine.") from exc
        raise ServerStartError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


class ApiServer:
    """Runs an ASGI app under Hypercorn on its own thread and event loop."""

    def __init__(self, app_factory: Callable[[], Quart], *, graceful_timeout: float = 5.0,
                 timeouts: ServerTimeouts | None = None) -> None:
        self._app_factory = app_factory
        self._graceful_timeout = graceful_timeout
        self.timeouts = timeouts or ServerTimeouts()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._lock = threading.Lock()
        self.host = ""
        self.port = 0
        self.error: str | None = None
        self.app: Quart | None = None
        """The app being served (the latest one after a restart)."""

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def base_url(self) -> str:
        """``http://host:port/v1`` as clients should use it."""
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/v1"

    def start(self, host: str, port: int, *, timeout: float = 15.0) -> None:
        """Bind and serve; raises ServerStartError (e.g. port in use) without leaving a thread."""
        with self._lock:
            if self.running:
                raise RuntimeError("server already running")
            self.error = None
            sock = bind_socket(host, port)
            self.host, self.port = host, sock.getsockname()[1]
            ready = threading.Event()
            failure: list[BaseException] = []
            fd = os.dup(sock.fileno())  # Hypercorn owns this copy; we close ``sock`` ourselves
            config = Config()
            config.bind = [f"fd://{fd}"]
            config.graceful_timeout = self._graceful_timeout
            config.accesslog = logging.getLogger("tater.access")
            config.access_log_format = ACCESS_LOG_FORMAT
            config.errorlog = logging.getLogger("tater.server")
            self.timeouts.apply(config)
            give_protocol_errors_a_body()
            try:
                app = self._app_factory()
                app.config["BODY_TIMEOUT"] = self.timeouts.body_seconds
                self.app = app
            except BaseException:
                sock.close()
                os.close(fd)
                raise

            @app.before_serving
            async def _ready() -> None:
                ready.set()

            def run() -> None:
                loop = new_event_loop()
                asyncio.set_event_loop(loop)
                self._loop = loop
                self._stop_event = asyncio.Event()
                try:
                    loop.run_until_complete(serve(app, config, shutdown_trigger=self._stop_event.wait))
                except BaseException as exc:  # surfaced to start() or kept for the UI
                    failure.append(exc)
                    self.error = f"{type(exc).__name__}: {exc}"
                    log.exception("server stopped with an error")
                finally:
                    try:
                        _cancel_leftovers(loop)
                        loop.run_until_complete(loop.shutdown_asyncgens())
                    finally:
                        loop.close()
                        self._loop = None
                        sock.close()
                        ready.set()

            self._thread = threading.Thread(target=run, name="tater-server", daemon=True)
            self._thread.start()
        if not ready.wait(timeout) or failure:
            self.stop()
            why = f"{type(failure[0]).__name__}: {failure[0]}" if failure else "it did not start in time"
            raise ServerStartError(f"The API server failed to start: {why}")
        log.info("serving on %s", self.base_url)

    def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish (or cancel them), join the thread."""
        with self._lock:
            thread, loop, ev = self._thread, self._loop, self._stop_event
            if thread is None:
                return
            if loop is not None and ev is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # loop already closing
                    loop.call_soon_threadsafe(ev.set)
            thread.join(timeout if timeout is not None else self._graceful_timeout + 5)
            if thread.is_alive():
                log.error("server thread did not stop in time")
            self._thread = None

    def restart(self, host: str, port: int) -> None:
        """Stop, then start on a (possibly new) address."""
        self.stop()
        self.start(host, port)


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed (Linux, macOS), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
