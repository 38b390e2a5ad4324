"""Per-request bookkeeping for the request log: who, what, how long, how many tokens."""

from __future__ import annotations

import time

from app.providers.base import Usage
from app.server.request_log import RequestLog, RequestRecord

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
        self.model: str | None = None
        self.mode: str | None = None
        self.usage = Usage()
        self.body = ""
        self.stream = False
        self._done = False
        log.begin()

    def finish(self, status: int, usage: Usage | None = None) -> None:
        if self._done:
            return
        self._done = True
        self._log.end()
        u = usage or self.usage
        self._log.add(RequestRecord(
            started=self.started, client=self.client, method=self.method, path=self.path,
            status=status, model=self.model, mode=self.mode, prompt_tokens=u.prompt_tokens,
            completion_tokens=u.completion_tokens, latency_s=time.perf_counter() - self._t0,
            stream=self.stream, body=self.body, headers=self.headers))
