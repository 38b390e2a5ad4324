"""The watchdog covers batched requests: a llama.cpp batch step stuck in ``llama_decode`` fails
every member (503 ``model_stalled``), the model is reloaded, and a slow healthy batch is left alone."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
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
from app.providers.base import ProviderError
from app.providers.batch_jobs import SlotJob, StepClock
from app.providers.local import PREFILL_TOKENS_PER_STEP, batch_step_overdue
from app.settings import ModelRow
from tests.conftest import LiveServer, free_port, process_env, start_live_server
from tests.hardening import wedge
from tests.hardening.conftest import post_chat, stream_lines

ROOT = Path(__file__).resolve().parents[2]
KEY = "tater-" + "ef" * 32
STEP = 1.0  # limits.token_timeout_seconds in these tests (its minimum)
SETTLE = STEP + 2.0  # the watchdog looks twice a second; loading the fresh tiny model takes ms
MODEL = "wedge::slots"


@pytest.fixture
def slots_server(clean_env: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setitem(providers.PROVIDER_PATHS, wedge.WEDGE, "tests.hardening.wedge:WedgeProvider")
    monkeypatch.setattr(wedge, "SLOW_STEP", 0.0)
    wedge.RELEASE.clear()
    wedge.STUCK.clear()
    row = ModelRow(id=MODEL, provider=wedge.WEDGE, source=str(tiny_gguf), options={"parallel": 2})
    live = start_live_server(clean_env, [row], row.id, limits={"token_timeout_seconds": STEP})
    yield live
    wedge.RELEASE.set()  # let the abandoned step finish and its model be freed
    live.services.shutdown()  # type: ignore[attr-defined]


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_stuck_batch_step_fails_every_member_and_the_model_is_reloaded(slots_server: LiveServer) -> None:
    hub = slots_server.services.hub  # type: ignore[attr-defined]
    first = hub.load(MODEL).result()
    assert first.engine is not None and first.parallelism == 2
    wedge.SLOW_STEP = 0.2  # the first member is still decoding when the second joins
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        member = pool.submit(post_chat, slots_server, "dawdle along", max_tokens=60)
        wait_for(lambda: first.engine.active() == 1)
        started = time.monotonic()
        stuck = pool.submit(post_chat, slots_server, "wedge please")
        wait_for(lambda: first.engine.active() == 2 and wedge.STUCK.is_set())
        stuck, member = stuck.result(), member.result()
    waited = time.monotonic() - started
    for r in (stuck, member):  # the one that wedged the step, and the one decoding beside it
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "model_stalled"
    assert STEP <= waited < SETTLE, waited
    assert wedge.STUCK.is_set() and not wedge.RELEASE.is_set()  # still stuck in llama_decode
    assert first.broken
    with pytest.raises(ProviderError) as refused:  # the stuck engine takes no new member
        first.engine.submit(SlotJob(prompt=[1, 2], sampler=None, max_tokens=1,
                                    cancelled=threading.Event()))
    assert refused.value.code == "model_stalled"
    started = time.monotonic()
    ok = post_chat(slots_server, "hello")
    assert ok.status_code == 200, ok.text
    assert ok.json()["usage"]["completion_tokens"] == 3
    assert time.monotonic() - started < SETTLE
    fresh = hub.load(MODEL).result()
    assert fresh is not first and fresh.engine is not None and not fresh.broken


def test_a_stuck_batched_stream_fails_with_an_envelope_then_streams_work(slots_server: LiveServer) -> None:
    r = post_chat(slots_server, "wedge", stream=True)
    assert r.status_code == 503 and r.json()["error"]["code"] == "model_stalled"
    status, lines = stream_lines(slots_server, "hi")
    assert status == 200 and lines[-1] == "data: [DONE]"


def test_a_slow_healthy_batch_is_never_declared_stalled(slots_server: LiveServer) -> None:
    """Every step takes 60 % of its allowance: prompt chunks of hundreds of tokens take longer
    than the per-token limit, and a request waits for a slot longer than it, yet nothing stalls."""
    hub = slots_server.services.hub  # type: ignore[attr-defined]
    model = hub.load(MODEL).result()
    wedge.SLOW_STEP = 0.6 * STEP
    prompt = "dawdle " + " ".join(f"w{i}" for i in range(120))  # a few hundred tokens each
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:  # three requests on two slots
        replies = list(pool.map(lambda i: post_chat(slots_server, f"{i} {prompt}", max_tokens=2), range(3)))
    took = time.monotonic() - started
    assert [r.status_code for r in replies] == [200, 200, 200], [r.text for r in replies]
    prompt_tokens = replies[0].json()["usage"]["prompt_tokens"]
    assert prompt_tokens > PREFILL_TOKENS_PER_STEP  # its prefill step sleeps over 1.2 x STEP
    assert took > 2 * STEP  # slower than the per-token limit, for the queued request too
    assert hub.load(MODEL).result() is model and not model.broken
    assert not wedge.STUCK.is_set()


def test_batch_step_deadlines() -> None:
    clock = StepClock()
    assert clock.in_flight() is None
    assert not batch_step_overdue(None, 1e12, 1.0)  # between steps: never (idle, queued, paused)
    with clock.step(2 * PREFILL_TOKENS_PER_STEP):
        started, tokens = clock.in_flight()  # type: ignore[misc]
        assert tokens == 2 * PREFILL_TOKENS_PER_STEP
        assert not batch_step_overdue((started, tokens), started + 2.9, 1.0)  # 1 + 2 steps
        assert batch_step_overdue((started, tokens), started + 3.1, 1.0)
        assert not batch_step_overdue((started, 1), started + 0.9, 1.0)  # one decoding member
        assert batch_step_overdue((started, 1), started + 1.1, 1.0)
    assert clock.in_flight() is None


# -- the process -------------------------------------------------------------------------------


def test_tater_serve_survives_a_stuck_batch_and_sigterm_ends_it(tmp_path: Path, tiny_gguf: Path) -> None:
    config = tmp_path / "cfg"
    config.mkdir()
    row = {"id": MODEL, "provider": wedge.WEDGE, "source": str(tiny_gguf), "options": {"parallel": 2}}
    (config / "settings.json").write_text(json.dumps({
        "models": [row], "active_model": row["id"], "limits": {"token_timeout_seconds": STEP}}))
    env = process_env(config, TATER_OPENAI_API_KEY=KEY, PYTHONPATH=str(ROOT))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.hardening.wedge", "serve", "--port", str(port)],
                            cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert "serving at" in line, line + proc.stderr.read()  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        headers = {"Authorization": f"Bearer {KEY}"}

        def post(prompt: str) -> httpx.Response:
            return httpx.post(url, headers=headers, timeout=30,
                              json={"messages": [{"role": "user", "content": prompt}], "max_tokens": 3})

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # two members of the stuck batch
            stuck = list(pool.map(post, ["wedge one", "wedge two"]))
        assert time.monotonic() - started < SETTLE + 1
        for r in stuck:
            assert r.status_code == 503 and r.json()["error"]["code"] == "model_stalled", r.text
        started = time.monotonic()
        ok = post("hi")
        assert ok.status_code == 200 and time.monotonic() - started < SETTLE
        # the abandoned engine is still stuck in llama_decode, and a new stuck member is in flight
        in_flight = threading.Thread(target=lambda: _ignore(post, "wedge again"), daemon=True)
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


def _ignore(fn, *args) -> None:
    with contextlib.suppress(httpx.HTTPError):
        fn(*args)
