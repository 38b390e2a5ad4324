"""HTTP to an upstream OpenAI-compatible server: connection pools, requests, error mapping.

:class:`UpstreamClient` is what the remote provider's chat, completion and embedding calls
share: one ``httpx.AsyncClient`` per event loop (httpx clients are bound to their loop),
transport failures mapped to :class:`UpstreamError` (504 on a timeout, 502 otherwise), and
an upstream HTTP error turned into the OpenAI error the client sees (401/403/404 keep their
meaning; anything else is a 502).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from app.providers.base import ProviderError

CONNECT_TIMEOUT = 10.0


class UpstreamError(ProviderError):
    """The upstream server failed or refused; ``status``/``code`` say how."""

    status = 502
    code = "upstream_error"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 error_type: str | None = None, upstream_status: int | None = None) -> None:
        super().__init__(message, status=status, code=code)
        if error_type:
            self.error_type = error_type
        self.upstream_status = upstream_status
        """The HTTP status the upstream answered (None: it never answered)."""


def json_or_text(text: str) -> Any:
    """``text`` parsed as JSON, or the text itself when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def error_message(payload: Any) -> str:
    """The human message out of an OpenAI-style (or any) error payload."""
    if isinstance(payload, dict):
        err = payload.get("error", payload)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("detail") or json.dumps(err)[:500])
        if isinstance(err, str):
            return err
        if payload.get("detail"):
            return str(payload["detail"])[:500]
    text = str(payload).strip()
    return text[:500] if text else "(empty response)"


class UpstreamClient:
    """Requests to one upstream base URL, with the row's key and timeout."""

    def __init__(self, base_url: str, upstream_model: str, *, api_key: str | None = None,
                 timeout: float, key_problem: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url
        self.upstream_model = upstream_model
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT))
        self.headers = {"Accept": "text/event-stream"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.key_problem = key_problem  # why no key could be read, for a 401's message
        self.transport = transport  # None: the network (tests pass httpx.MockTransport)
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    def url(self, path: str) -> str:
        """The upstream URL of an API path such as ``/chat/completions``."""
        return f"{self.base_url}{path}"

    def client(self) -> httpx.AsyncClient:
        """This event loop's connection pool (created on first use)."""
        loop = asyncio.get_running_loop()
        for old in [lp for lp in self._clients if lp.is_closed()]:
            del self._clients[old]  # its loop is gone; so are its connections
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(timeout=self.timeout, headers=self.headers,
                                       transport=self.transport)
            self._clients[loop] = client
        return client

    async def open(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST ``body`` and return the streamed response, whatever its status.

        Transport failures raise :class:`UpstreamError`; the caller reads the status and
        must close the response.
        """
        url = self.url(path)
        try:
            client = self.client()
            return await client.send(client.build_request("POST", url, json=body), stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamError(f"the upstream server {url} timed out ({type(exc).__name__})",
                                status=504, code="upstream_timeout") from exc
        except httpx.ConnectError as exc:
            raise UpstreamError(f"cannot reach the upstream server {url}: {exc}",
                                status=502, code="upstream_unreachable") from exc
        except httpx.TransportError as exc:
            raise UpstreamError(f"the connection to {url} failed: "
                                f"{type(exc).__name__}: {exc}") from exc

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """Like :meth:`open`, but an HTTP error status raises :meth:`http_error` (closed)."""
        resp = await self.open(path, body)
        if resp.status_code >= 400:
            text = await read_text(resp)
            raise self.http_error(path, resp.status_code, text)
        return resp

    def http_error(self, path: str, status: int, text: str) -> UpstreamError:
        """The OpenAI error for an upstream HTTP error status and its body."""
        message = error_message(json_or_text(text))
        where = f"the upstream server {self.url(path)} (model {self.upstream_model!r})"
        if status == 401:
            hint = f" ({self.key_problem})" if self.key_problem else \
                " - check the API key stored for this row"
            return UpstreamError(f"{where} rejected the API key: {message}{hint}", status=401,
                                 code="upstream_unauthorized", error_type="authentication_error",
                                 upstream_status=status)
        if status == 403:
            return UpstreamError(f"{where} refused access: {message}", status=403,
                                 code="upstream_forbidden", error_type="permission_error",
                                 upstream_status=status)
        if status == 404:
            return UpstreamError(f"{where} answered 404 Not Found: {message}", status=404,
                                 code="upstream_not_found", error_type="invalid_request_error",
                                 upstream_status=status)
        return UpstreamError(f"{where} answered HTTP {status}: {message}", status=502,
                             code="upstream_error", upstream_status=status)

    async def aclose(self) -> None:
        """Close every loop's pool (others' from their own loop, if it still runs)."""
        clients, self._clients = list(self._clients.items()), {}
        current = asyncio.get_running_loop()
        for loop, client in clients:
            if loop is current:
                await client.aclose()
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(client.aclose(), loop)


async def read_text(resp: httpx.Response) -> str:
    """A streamed response's whole body as text; the response is closed afterwards."""
    try:
        return (await resp.aread()).decode("utf-8", "replace")
    finally:
        await resp.aclose()
