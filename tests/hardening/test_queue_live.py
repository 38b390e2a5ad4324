"""Queueing, disconnects and failures through the real server (HTTP on loopback)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from app.server.hardening import QUEUES_KEY
from tests.conftest import LiveServer
from tests.fakes import Script
from tests.hardening.conftest import auth, chat_body


def queues(live: LiveServer):
    return live.services.server.app.extensions[QUEUES_KEY]  # type: ignore[attr-defined]


async def _wait_for(cond, timeout: float = 3.0) -> None:
    deadline = time.perf_counter() + timeout
    while not cond():
        assert time.perf_counter() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def _read_tokens(resp: httpx.Response, n: int) -> list[str]:
    """Read ``n`` content deltas, leaving the stream open (one line iterator per response)."""
    lines = resp.extensions.setdefault("tater_lines", resp.aiter_lines())
    got: list[str] = []
    while len(got) < n:
        line = await anext(lines)
        if line.startswith("data: {") and '"content":"' in line and '"content":""' not in line:
            got.append(json.loads(line[6:])["choices"][0]["delta"]["content"])
    return got


async def test_full_queue_answers_503_with_retry_after_at_once(scripted_server: LiveServer,
                                                                script: Script) -> None:
    scripted_server.settings.update(limits={"queue_depth": 1})  # applies to the next request
    url, h = scripted_server.base_url + "/chat/completions", auth(scripted_server)
    async with httpx.AsyncClient(timeout=10) as c:
        async with c.stream("POST", url, json=chat_body("long", stream=True), headers=h) as running:
            await _read_tokens(running, 1)
            waiting = asyncio.create_task(c.post(url, json=chat_body("second", max_tokens=2), headers=h))
            await _wait_for(lambda: queues(scripted_server).stats()["scripted::local"].waiting == 1)
            t0 = time.perf_counter()
            refused = await c.post(url, json=chat_body("third", max_tokens=2), headers=h)
            assert time.perf_counter() - t0 < 0.5
            assert refused.status_code == 503
            assert int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["error"]["code"] == "queue_full"
        second = await waiting  # the stream closed: the queued request runs next
        assert second.status_code == 200
        assert second.json()["choices"][0]["message"]["content"] == "second-0 second-1 "
    assert "third" not in script.started


async def test_queued_request_whose_client_left_never_runs(scripted_server: LiveServer,
                                                           script: Script) -> None:
    url, h = scripted_server.base_url + "/chat/completions", auth(scripted_server)
    async with httpx.AsyncClient(timeout=10) as c:
        async with c.stream("POST", url, json=chat_body("long", stream=True), headers=h) as running:
            await _read_tokens(running, 1)
            gone = asyncio.create_task(c.post(url, json=chat_body("abandoned", max_tokens=3), headers=h))
            stays = asyncio.create_task(c.post(url, json=chat_body("patient", max_tokens=3), headers=h))
            await _wait_for(lambda: queues(scripted_server).stats()["scripted::local"].waiting == 2)
            gone.cancel()  # the client hangs up while queued
            await _wait_for(lambda: queues(scripted_server).stats()["scripted::local"].waiting == 1)
        assert (await stays).status_code == 200
    assert script.started == ["long", "patient"]
    await _wait_for(lambda: queues(scripted_server).idle())


async def test_running_generation_stops_within_two_tokens_of_hang_up(scripted_server: LiveServer,
                                                                     script: Script) -> None:
    script.delay = 0.02
    url, h = scripted_server.base_url + "/chat/completions", auth(scripted_server)
    async with httpx.AsyncClient(timeout=10) as c:
        async with c.stream("POST", url, json=chat_body("cut", stream=True), headers=h) as r:
            assert len(await _read_tokens(r, 5)) == 5
        hung_up = time.perf_counter()
    await _wait_for(lambda: script.active == 0, 2)
    after = [t for t in script.token_times["cut"] if t > hung_up]
    assert len(after) <= 2, f"{len(after)} tokens were generated after the client left"
    await _wait_for(lambda: queues(scripted_server).idle())


@pytest.mark.parametrize("stream", [False, True])
def test_provider_failure_is_a_500_envelope_and_the_model_stays_usable(scripted_server: LiveServer,
                                                                       stream: bool) -> None:
    url, h = scripted_server.base_url + "/chat/completions", auth(scripted_server)
    r = httpx.post(url, json=chat_body("boom", stream=stream), headers=h, timeout=10)
    assert r.status_code == 500
    err = r.json()["error"]
    assert err["type"] == "server_error" and "scripted failure" in err["message"]
    if stream:  # failing after the first tokens: an error event, then [DONE]
        r = httpx.post(url, json=chat_body("boom-later", stream=True), headers=h, timeout=10)
        events = [e for e in r.text.split("\n\n") if e]
        assert r.status_code == 200 and events[-1] == "data: [DONE]"
        last = json.loads(events[-2][6:])
        assert last["error"]["type"] == "server_error" and "mid-stream" in last["error"]["message"]
    ok = scripted_server.client().chat.completions.create(
        model="scripted::local", messages=[{"role": "user", "content": "fine"}], max_tokens=2)
    assert ok.choices[0].message.content == "fine-0 fine-1 "
    assert queues(scripted_server).idle()


async def test_remote_rows_run_in_parallel_local_rows_one_at_a_time(scripted_server: LiveServer,
                                                                    script: Script) -> None:
    script.delay = 0.05
    url, h = scripted_server.base_url + "/chat/completions", auth(scripted_server)
    async with httpx.AsyncClient(timeout=20) as c:
        for model, expected_peak in (("scripted::remote", 3), ("scripted::local", 1)):
            script.peak = 0
            rs = await asyncio.gather(*[
                c.post(url, json=chat_body(f"p{i}", model=model, max_tokens=4), headers=h)
                for i in range(5)])
            assert [r.status_code for r in rs] == [200] * 5
            assert [r.json()["choices"][0]["message"]["content"] for r in rs] == \
                [" ".join(f"p{i}-{k}" for k in range(4)) + " " for i in range(5)]
            assert script.peak == expected_peak, model


async def test_non_streamed_generation_stops_when_the_client_gives_up(scripted_server: LiveServer,
                                                                      script: Script) -> None:
    script.delay = 0.02
    url, h = scripted_server.base_url + "/chat/completions", auth(scripted_server)
    async with httpx.AsyncClient(timeout=10) as c:
        request = asyncio.create_task(c.post(url, json=chat_body("quiet", max_tokens=500), headers=h))
        await _wait_for(lambda: len(script.token_times.get("quiet", [])) >= 3)
        request.cancel()  # the client hangs up while waiting for the whole reply
        hung_up = time.perf_counter()
    await _wait_for(lambda: script.active == 0, 2)
    after = [t for t in script.token_times["quiet"] if t > hung_up]
    assert len(after) <= 2, f"{len(after)} tokens were generated after the client left"
    await _wait_for(lambda: queues(scripted_server).idle())
    ok = httpx.post(url, json=chat_body("next", max_tokens=2), headers=h, timeout=10)
    assert ok.json()["choices"][0]["message"]["content"] == "next-0 next-1 "
