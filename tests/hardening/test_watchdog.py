"""The watchdog: a runtime call stuck in llama.cpp cannot wedge a model or the process (issue 11, 3)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app import providers
from app.model_hub import CLOSE_TIMEOUT
from app.providers.local import RuntimeCall
from app.settings import ModelRow
from tests.conftest import LiveServer, free_port, start_live_server
from tests.hardening import wedge
from tests.hardening.conftest import post_chat, stream_lines

ROOT = Path(__file__).resolve().parents[2]
KEY = "tater-" + "cd" * 32
STEP = 1.0  # limits.token_timeout_seconds in these tests
SETTLE = STEP + 2.0  # the watchdog looks twice a second; loading the fresh tiny model takes ms


@pytest.fixture
def wedge_server(clean_env: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setitem(providers.PROVIDER_PATHS, wedge.WEDGE, "tests.hardening.wedge:WedgeProvider")
    wedge.RELEASE.clear()
    wedge.STUCK.clear()
    row = ModelRow(id="wedge::tiny", provider=wedge.WEDGE, source=str(tiny_gguf),
                   options={"parallel": 1})  # single calls (tests/hardening/test_watchdog_batch.py: slots)
    live = start_live_server(clean_env, [row], row.id, limits={"token_timeout_seconds": STEP})
    yield live
    wedge.RELEASE.set()  # let the abandoned thread finish and free its model
    live.services.shutdown()  # type: ignore[attr-defined]


def test_a_stuck_generation_is_abandoned_and_the_model_reloaded(wedge_server: LiveServer) -> None:
    hub = wedge_server.services.hub  # type: ignore[attr-defined]
    first = hub.load("wedge::tiny").result()
    started = time.monotonic()
    stuck = post_chat(wedge_server, "wedge please")
    waited = time.monotonic() - started
    assert stuck.status_code == 503, stuck.text
    assert stuck.json()["error"]["code"] == "model_stalled"
    assert STEP <= waited < SETTLE, waited
    assert wedge.STUCK.is_set() and not wedge.RELEASE.is_set()  # it really is still stuck in llama.cpp
    started = time.monotonic()
    ok = post_chat(wedge_server, "hello")
    assert ok.status_code == 200, ok.text
    assert ok.json()["usage"]["completion_tokens"] == 3
    assert time.monotonic() - started < SETTLE
    assert hub.load("wedge::tiny").result() is not first  # a fresh instance
    assert first.broken


def test_a_stuck_stream_fails_with_an_envelope_and_later_streams_work(wedge_server: LiveServer) -> None:
    r = post_chat(wedge_server, "wedge", stream=True)
    assert r.status_code == 503 and r.json()["error"]["code"] == "model_stalled"
    status, lines = stream_lines(wedge_server, "hi")
    assert status == 200 and lines[-1] == "data: [DONE]"


def test_a_model_is_not_held_after_its_client_has_gone(wedge_server: LiveServer) -> None:
    with pytest.raises(httpx.TimeoutException):
        post_chat(wedge_server, "wedge", timeout=0.3)  # the client hangs up while the call is stuck
    hung_up = time.monotonic()
    while True:  # the next request is answered once the stuck instance is replaced
        r = post_chat(wedge_server, "after", timeout=30)
        if r.status_code == 200:
            break
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_stalled", r.text
        assert time.monotonic() - hung_up < SETTLE
    assert time.monotonic() - hung_up < SETTLE


def test_shutdown_is_bounded_while_a_call_is_stuck(wedge_server: LiveServer) -> None:
    """What the tray's Quit runs (``Services.shutdown``): it cannot wait for a stuck runtime."""
    wedge_server.settings.update(limits={"token_timeout_seconds": 600})  # the watchdog stays out
    stuck = threading.Thread(target=lambda: _ignore(post_chat, wedge_server, "wedge", timeout=30),
                             daemon=True)
    stuck.start()
    assert wedge.STUCK.wait(10)
    started = time.monotonic()
    wedge_server.services.shutdown()  # type: ignore[attr-defined]
    took = time.monotonic() - started
    graceful = 5.0  # ApiServer's default: in-flight requests get this long, then are cancelled
    assert took < graceful + CLOSE_TIMEOUT + 1.5, took
    assert not wedge.RELEASE.is_set()  # still stuck in llama.cpp: shutdown did not wait for it


def test_call_deadlines() -> None:
    call = RuntimeCall(prompt_bytes=4096)
    assert not call.overdue(1e12, 1.0)  # not started: waiting for the lock is not the runtime's fault
    call.begin()
    t0 = call.last_step
    assert not call.overdue(t0 + 4.9, 1.0) and call.overdue(t0 + 5.1, 1.0)  # prefill: 1 + 4096/1024 steps
    call.step()
    t1 = call.last_step
    assert not call.overdue(t1 + 0.9, 1.0) and call.overdue(t1 + 1.1, 1.0)
    call.cancel()
    assert call.overdue(call.cancelled_at + 1.1, 1.0)
    call.done = True
    assert not call.overdue(1e12, 1.0)


# -- the process -------------------------------------------------------------------------------


def test_tater_serve_survives_a_stuck_call_and_sigterm_ends_it(tmp_path: Path, tiny_gguf: Path) -> None:
    config = tmp_path / "cfg"
    config.mkdir()
    row = {"id": "wedge::tiny", "provider": wedge.WEDGE, "source": str(tiny_gguf), "options": {"parallel": 1}}
    (config / "settings.json").write_text(json.dumps({
        "models": [row], "active_model": row["id"], "limits": {"token_timeout_seconds": STEP}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TATER_")}
    env.update(TATER_CONFIG_DIR=str(config), TATER_LOG_DIR=str(tmp_path / "logs"),
               TATER_OPENAI_API_KEY=KEY, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
               PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.hardening.wedge", "serve", "--port", str(port)],
                            cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert "serving at" in line, line + proc.stderr.read()  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        headers = {"Authorization": f"Bearer {KEY}"}

        def body(prompt: str) -> dict:
            return {"messages": [{"role": "user", "content": prompt}], "max_tokens": 3}

        stuck = httpx.post(url, json=body("wedge"), headers=headers, timeout=30)
        assert stuck.status_code == 503 and stuck.json()["error"]["code"] == "model_stalled"
        started = time.monotonic()
        ok = httpx.post(url, json=body("hi"), headers=headers, timeout=30)
        assert ok.status_code == 200 and time.monotonic() - started < SETTLE
        # the abandoned thread is still stuck in llama.cpp, and a new stuck call is in flight
        in_flight = threading.Thread(target=lambda: _ignore(httpx.post, url, json=body("wedge again"),
                                                            headers=headers, timeout=30), daemon=True)
        in_flight.start()
        time.sleep(0.3)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        assert time.monotonic() - signalled < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _ignore(fn, *args, **kw) -> None:
    with contextlib.suppress(httpx.HTTPError):
        fn(*args, **kw)
