"""Remote OpenAI-compatible servers (Ollama, LM Studio, llama-server, vLLM, another Tater).

A row's ``source`` is the upstream model name and ``options`` hold ``base_url`` (required,
e.g. ``http://127.0.0.1:11434/v1``; a bare ``http://host:port`` gets ``/v1``) and
``timeout`` (seconds between bytes, default 300).  The optional API key lives in the OS
keyring, one entry per row (:func:`api_key_entry`), never in the settings file.

Requests stream ``/chat/completions`` with ``stream_options.include_usage``; an upstream
that rejects that option is asked again without it, and one that sends no usage reports
zeros.  Upstream failures become :class:`~app.providers.upstream.UpstreamError` (an OpenAI
error for the client); the HTTP plumbing is :class:`~app.providers.upstream.UpstreamClient`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from app.keystore import KeystoreUnavailable, SecretStore
from app.providers import remote_compat
from app.providers.base import (
    DEFAULT_PARALLELISM,
    ChatChunk,
    ChatModel,
    ChatRequest,
    ModelLoadError,
    Provider,
    TextRequest,
    Usage,
)
from app.providers.remote_compat import adapt_body, rejects_json_schema
from app.providers.row_options import RemoteOptions
from app.providers.toolcalls import first_fragments
from app.providers.upstream import UpstreamClient, UpstreamError, error_message, read_text

if TYPE_CHECKING:
    from app.settings import ModelRow

log = logging.getLogger(__name__)

CHAT_PATH = "/chat/completions"

DEFAULT_TIMEOUT = 300.0


def api_key_entry(row_id: str) -> str:
    """The keyring entry that holds a remote row's API key."""
    return f"remote:{row_id}"


def normalize_base_url(base_url: str) -> str:
    """Validate an http(s) base URL; strip trailing slashes; add ``/v1`` to a bare host."""
    text = (base_url or "").strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an http(s) URL like http://127.0.0.1:11434/v1, "
                         f"got {base_url!r}")
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def host_port(base_url: str) -> str:
    """``host:port`` of a base URL (default port by scheme; IPv6 in brackets)."""
    parts = urlsplit(normalize_base_url(base_url))
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{host}:{port}"


def build_body(upstream_model: str, request: ChatRequest, *, include_usage: bool) -> dict[str, Any]:
    """The upstream ``/chat/completions`` body for a request (only fields that are set)."""
    body: dict[str, Any] = {
        "model": upstream_model,
        "messages": [m.to_dict() for m in request.messages],
        "stream": True,
        "temperature": request.temperature,
        "top_p": request.top_p,
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    optional = {
        "max_tokens": request.max_tokens, "seed": request.seed, "user": request.user,
        "tools": request.tools, "tool_choice": request.tool_choice,
        "parallel_tool_calls": request.parallel_tool_calls,
        "response_format": request.response_format,
        "top_logprobs": request.top_logprobs if request.logprobs else None,
        "logit_bias": {str(k): v for k, v in request.logit_bias.items()} if request.logit_bias else None,
        "reasoning_effort": request.reasoning_effort,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if request.stop:
        body["stop"] = list(request.stop)
    if request.presence_penalty:
        body["presence_penalty"] = request.presence_penalty
    if request.frequency_penalty:
        body["frequency_penalty"] = request.frequency_penalty
    if request.logprobs:
        body["logprobs"] = True
    return body


UPSTREAM_REASONING_FIELDS = ("reasoning_content", "reasoning")
"""Where upstream servers put reasoning deltas (llama-server, vLLM, DeepSeek: the first;
OpenRouter, Ollama, newer vLLM: the second); the first one present is used."""


def upstream_reasoning(delta: dict[str, Any]) -> str:
    """The reasoning text of an upstream stream delta ("" when it has none)."""
    for name in UPSTREAM_REASONING_FIELDS:
        value = delta.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


class RemoteChatModel(ChatModel):
    """Talks to one upstream model over HTTP; nothing is loaded locally."""

    provider: ClassVar[str] = "remote"
    supports_logit_bias: ClassVar[bool] = True  # passed on: the upstream judges its token ids

    def __init__(self, model_id: str, *, base_url: str, upstream_model: str,
                 api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 key_problem: str | None = None, parallelism: int = DEFAULT_PARALLELISM,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(model_id)
        self.parallelism = max(1, parallelism)
        self.base_url = normalize_base_url(base_url)
        self.upstream_model = upstream_model
        self.upstream = UpstreamClient(self.base_url, upstream_model, api_key=api_key,
                                       timeout=timeout, key_problem=key_problem,
                                       transport=transport)
        self.url = self.upstream.url(CHAT_PATH)
        self._include_usage = True
        self._schema_compat = False  # upstream wants llama.cpp's json_object+schema form

    async def _stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        for attempt in range(3):
            body = adapt_body(build_body(self.upstream_model, request,
                                         include_usage=self._include_usage),
                              request, schema_compat=self._schema_compat)
            resp = await self.upstream.open(CHAT_PATH, body)
            if resp.status_code >= 400:
                text = await read_text(resp)
                if (attempt == 0 and self._include_usage and resp.status_code in (400, 422)
                        and "stream_options" in text):
                    self._include_usage = False  # an older server: ask again without it
                    continue
                if not self._schema_compat and rejects_json_schema(request, resp.status_code,
                                                                   text):
                    self._schema_compat = True  # e.g. llama_cpp.server: its own form
                    continue
                raise self.upstream.http_error(CHAT_PATH, resp.status_code, text)
            try:
                async for chunk in self._parse(resp):
                    yield chunk
            except httpx.TimeoutException as exc:
                raise UpstreamError(f"the upstream server {self.url} timed out "
                                    f"({type(exc).__name__})", status=504,
                                    code="upstream_timeout") from exc
            except httpx.TransportError as exc:
                raise UpstreamError(f"the connection to {self.url} failed: "
                                    f"{type(exc).__name__}: {exc}") from exc
            finally:
                await resp.aclose()
            return

    async def _parse(self, resp: httpx.Response) -> AsyncIterator[ChatChunk]:
        finish: str | None = None
        usage: Usage | None = None
        done = False
        started: set[int] = set()  # tool-call indexes whose id/name were sent
        async for line in resp.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            try:
                event = json.loads(data)
            except ValueError:
                raise UpstreamError(f"{self.url} sent a malformed stream event: {data[:200]!r}") \
                    from None
            if isinstance(event, dict) and event.get("error"):
                raise UpstreamError(f"the upstream server {self.url} failed mid-stream: "
                                    f"{error_message(event)}")
            if event.get("usage"):
                u = event["usage"]
                usage = Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))
            for choice in event.get("choices") or []:
                if choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta") or {}
                calls = first_fragments(delta.get("tool_calls") or [], started)
                logprobs = (choice.get("logprobs") or {}).get("content")
                thought = upstream_reasoning(delta)
                if delta.get("content") or thought or calls or logprobs:
                    yield ChatChunk(text=delta.get("content") or "", reasoning=thought,
                                    tool_calls=calls or None, logprobs=logprobs or None)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
        if finish is None and not done:
            raise UpstreamError(f"the upstream server {self.url} closed the stream before finishing")
        yield ChatChunk(finish_reason=finish or "stop", usage=usage or Usage())

    async def stream_text(self, request: TextRequest) -> AsyncIterator[ChatChunk]:
        async for chunk in remote_compat.stream_text(self.upstream, request):
            yield chunk

    async def embed(self, texts: list[str | list[int]]) -> tuple[list[list[float]], int]:
        return await remote_compat.embed(self.upstream, texts)

    async def aclose(self) -> None:
        await self.upstream.aclose()


class RemoteProvider(Provider):
    """Rows that point at another OpenAI-compatible server."""

    name: ClassVar[str] = "remote"
    label: ClassVar[str] = "Remote (OpenAI-compatible)"
    local: ClassVar[bool] = False
    options_model = RemoteOptions

    def __init__(self, secrets: SecretStore | None = None) -> None:
        self.secrets = secrets or SecretStore()

    @classmethod
    def row_for(cls, source: str, **options: Any) -> ModelRow:
        """A row ``remote::<host:port>::<upstream model>``; ``base_url`` is required."""
        from app.settings import ModelRow

        if "base_url" not in options:
            raise ValueError("a remote row needs base_url (e.g. http://127.0.0.1:11434/v1)")
        base = normalize_base_url(options["base_url"])
        opts = {**options, "base_url": base}
        if opts.get("timeout") is None:
            opts.pop("timeout", None)
        display = opts.pop("display_name", "")
        return ModelRow(id=f"remote::{host_port(base)}::{source}", provider=cls.name,
                        source=source, display_name=display, options=opts)

    def set_api_key(self, row_id: str, key: str | None) -> None:
        """Store (or with None/"" delete) the row's API key in the keyring."""
        if key:
            self.secrets.set(api_key_entry(row_id), key)
        else:
            self.secrets.delete(api_key_entry(row_id))

    def load(self, row: ModelRow) -> RemoteChatModel:
        opts: RemoteOptions = self.parse_options(row)
        timeout = opts.timeout or DEFAULT_TIMEOUT
        try:
            base = normalize_base_url(opts.base_url)
        except (TypeError, ValueError) as exc:
            raise ModelLoadError(f"remote row {row.id!r}: {exc}") from None
        key, problem = None, None
        try:
            key = self.secrets.get(api_key_entry(row.id))
        except KeystoreUnavailable as exc:  # no key then; say why if the upstream wants one
            problem = f"no API key could be read: {exc}"
            log.info("remote row %s: %s", row.id, problem)
        return RemoteChatModel(row.id, base_url=base, upstream_model=row.source, api_key=key,
                               timeout=timeout, key_problem=problem,
                               parallelism=self.parallelism_hint(row))

    @classmethod
    def parallelism_hint(cls, row: ModelRow) -> int:
        """The upstream's batch size when the row says (``options.max_parallel``), else
        :data:`DEFAULT_PARALLELISM`."""
        wanted = row.options.get("max_parallel")
        return wanted if isinstance(wanted, int) and wanted > 0 else DEFAULT_PARALLELISM
