"""The request log's own logic: the calling app from a User-Agent, and the rates a row reports."""

from __future__ import annotations

import time

import pytest

from app.providers.base import Usage
from app.server.request_log import RequestLog, RequestRecord, calling_app
from app.server.tracking import RequestTracker, requested_model


@pytest.mark.parametrize(("agent", "app"), [
    ("claude-cli/2.1.197 (external, sdk-cli)", "Claude Code"),
    ("codex_exec/0.171.0 (Debian 12; x86_64) xterm", "Codex CLI"),
    ("OpenAI/Python 3.57.0", "OpenAI Python SDK"),
    ("OpenAI/JS 6.3.0", "OpenAI JS SDK"),
    ("Anthropic/Python 0.70.0", "Anthropic Python SDK"),
    ("curl/7.88.1", "curl"),
    ("python-httpx/0.28.1", "httpx"),
    ("Tater-Desktop/0.1.0 (Try it)", "Tater (Try it)"),
    ("SomeEditor/3.2 (Linux)", "SomeEditor/3.2"),
    ("", ""),
])
def test_calling_app_from_user_agent(agent: str, app: str) -> None:
    assert calling_app(agent) == app


def test_streamed_row_reports_first_token_and_decode_rate_apart() -> None:
    log = RequestLog()
    tracker = RequestTracker(log, client="127.0.0.1", method="POST", path="/v1/chat/completions",
                             headers={"User-Agent": "curl/8.0", "Authorization": "Bearer secret"})
    assert log.in_flight == 1
    time.sleep(0.2)  # queue + load + prefill
    tracker.first_token()
    time.sleep(0.1)
    tracker.first_token()  # only the first counts
    tracker.finish(200, Usage(prompt_tokens=5, completion_tokens=11))
    tracker.finish(500)  # recorded once
    [row] = log.records()
    assert log.in_flight == 0 and row.app == "curl" and "Authorization" not in row.headers
    assert row.ttft_s == pytest.approx(0.2, abs=0.08)
    assert row.tokens_per_s == pytest.approx(10 / (row.latency_s - row.ttft_s), rel=0.01)
    assert row.tokens_per_s > 11 / row.latency_s  # not total tokens over total time


def test_rows_without_timing_fall_back_and_name_the_requested_model() -> None:
    assert requested_model('{"model": "gpt-4o", "messages": []}') == "gpt-4o"
    assert requested_model("not json") is None and requested_model("") is None
    old = RequestRecord(started=0, client="x", method="GET", path="/v1/models", status=200,
                        completion_tokens=10, latency_s=2.0)
    assert old.tokens_per_s == 5.0


def test_a_streamed_completion_row_has_its_first_token_time(llama_server) -> None:
    import httpx

    r = httpx.post(llama_server.base_url + "/completions", timeout=60,
                   headers={"Authorization": f"Bearer {llama_server.key}"},
                   json={"prompt": "Once upon a time", "max_tokens": 8, "stream": True})
    assert r.status_code == 200
    row = llama_server.services.request_log.records()[-1]
    assert row.path == "/v1/completions" and row.stream and row.completion_tokens == 8
    assert row.ttft_s is not None and 0 < row.ttft_s < row.latency_s
