"""Per-request bookkeeping for the request log: who, what, how long, how many tokens.

This is the one path every route uses: :func:`begin_tracking` when a request comes in (the
app's request hooks, and the ``/mcp`` gate), :func:`track_route` once the model is known,
:func:`track_model_ready` once it is loaded, :func:`track_usage` when the runtime counted the
tokens, and the tracker's ``first_token`` when the first token left the model (the streaming
writer); the app's request hooks finish the record.
"""

from __future__ import annotations

import json
import time

from quart import Response, g, request

from app.providers.base import Usage
from app.server.request_log import RequestLog, RequestRecord, calling_app

_SAFE_HEADERS = ("Content-Type", "X-Tater-Session", "User-Agent")
MAX_LOGGED_BODY = 64 * 1024


class RequestTracker:
    """Collects what the log needs; ``finish`` records exactly once."""

    def __init__(self, log: RequestLog, *, client: str, method: str, path: str,
                 headers: dict[str, str]) -> None:
        self._log = log
        self.started = time.time()
        self._t0 = time.perf_counter()
        self.client, self.method, self.path = client, method, path
        self.headers = {k: v for k, v in headers.items() if k in _SAFE_HEADERS}
        self.app = calling_app(self.headers.get("User-Agent", ""))
        self.model: str | None = None
        self.mode: str | None = None
        self.requested_model: str | None = None
        self.usage = Usage()
        self.body = ""
        self.stream = False
        self.error = ""
        self.ready_at: float | None = None  # the model was loaded and handed to the route
        self.first_token_at: float | None = None
        self._done = False
        log.begin()

    def routed(self, model_id: str, mode: str) -> None:
        """The request runs on ``model_id`` in ``mode``."""
        self.model, self.mode = model_id, mode

    def model_ready(self) -> None:
        """The model is loaded (load time is not generation time)."""
        self.ready_at = time.perf_counter()

    def first_token(self) -> None:
        """The first generated item reached the server (kept only the first time)."""
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def finish(self, status: int, usage: Usage | None = None, error: str = "") -> None:
        if self._done:
            return
        self._done = True
        self._log.end()
        end = time.perf_counter()
        u = usage or self.usage
        ttft = self.first_token_at - self._t0 if self.first_token_at is not None else None
        self._log.add(RequestRecord(
            started=self.started, client=self.client, method=self.method, path=self.path,
            status=status, model=self.model or self.requested_model, mode=self.mode,
            prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
            latency_s=end - self._t0, stream=self.stream, body=self.body, headers=self.headers,
            app=self.app, error=error or self.error, ttft_s=ttft,
            decode_tokens_per_s=self._decode_rate(u.completion_tokens, end)))

    def _decode_rate(self, tokens: int, end: float) -> float | None:
        """Tokens per second of generation: after the first token when streamed (prefill and
        queueing excluded), else after the model was ready (load time excluded)."""
        if self.first_token_at is not None and tokens > 1 and end > self.first_token_at:
            return (tokens - 1) / (end - self.first_token_at)
        start = self.ready_at if self.ready_at is not None else self._t0
        if self.first_token_at is None and tokens > 0 and end > start:
            return tokens / (end - start)
        return None


def begin_tracking(log: RequestLog, mode: str | None = None) -> RequestTracker:
    """Start the request log's record of the request being handled (``g.tracker``); the app's
    request hooks finish it.  ``mode`` when the route already says it (``mcp``)."""
    tracker = g.tracker = RequestTracker(log, client=request.remote_addr or "", method=request.method,
                                         path=request.path, headers=dict(request.headers))
    tracker.mode = mode
    return tracker


def current_tracker() -> RequestTracker | None:
    """The tracker of the request being handled (None outside a tracked request)."""
    return g.get("tracker")


def track_route(model_id: str, mode: str) -> None:
    """Record which model and mode the current request runs on."""
    tracker = current_tracker()
    if tracker is not None:
        tracker.routed(model_id, mode)


def track_model_ready() -> None:
    """Record that the current request's model is loaded."""
    tracker = current_tracker()
    if tracker is not None:
        tracker.model_ready()


def track_usage(usage: Usage, first_token_at: float | None = None) -> None:
    """Record the runtime's token counts for a whole (non-streamed) reply, and when its first
    token came out (``time.perf_counter()``) where the runtime's loop noted it."""
    tracker = current_tracker()
    if tracker is not None:
        tracker.usage = usage
        if first_token_at is not None and tracker.first_token_at is None:
            tracker.first_token_at = first_token_at


def requested_model(body: str) -> str | None:
    """The ``model`` a JSON request body names (for rows that failed before routing)."""
    try:
        data = json.loads(body) if body.lstrip().startswith("{") else None
    except (ValueError, RecursionError):  # a body nested too deep is a 400, not a logging crash
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model[:200] if isinstance(model, str) and model else None


async def error_reason(response: Response) -> str:
    """The message of an error envelope (OpenAI's or Anthropic's shape), else ""."""
    if response.mimetype != "application/json":
        return ""
    try:
        data = json.loads(await response.get_data(as_text=True))
    except (ValueError, TypeError):
        return ""
    err = data.get("error") if isinstance(data, dict) else None
    message = err.get("message") if isinstance(err, dict) else None
    return str(message)[:500] if message else ""
