"""A pool row on the real server over two real upstreams (``tater serve`` processes on the tiny
GGUF), driven with the official openai SDK: requests spread over both, a member stopped mid-test
is routed around and reported unhealthy, and after a restart and the back-off it serves again."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from app.providers.pool import PoolProvider
from app.providers.remote import RemoteProvider
from tests.conftest import LiveServer, free_port, start_live_server

ROOT = Path(__file__).resolve().parents[2]
MEMBER_KEY = "tater-" + "cd" * 32
RETRY_SECONDS = 4.0
ACCESS_LINE = re.compile(r'"POST /v1/chat/completions [^"]*" 200 ')



@dataclass
class Member:
    """One ``tater serve`` process on a fixed port (so it can be restarted where it was)."""

    name: str
    port: int
    gguf: Path
    home: Path
    proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TATER_")}
        env.update(TATER_CONFIG_DIR=str(self.home / "cfg"), TATER_LOG_DIR=str(self.home / "logs"),
                   TATER_OPENAI_API_KEY=MEMBER_KEY, PYTHONUNBUFFERED="1",
                   PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
                   PYTHONPATH=str(ROOT))
        self.home.mkdir(parents=True, exist_ok=True)
        with (self.home / "stderr.txt").open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app", "serve", "--port", str(self.port), "--model",
                 str(self.gguf), "--parallel", "2"],
                cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=err)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if f"serving at {self.base_url}" not in line:
            self.stop()
            raise AssertionError(f"{self.name} did not start: {line!r}; "
                                 f"{(self.home / 'stderr.txt').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def chats_answered(self) -> int:
        """Chat requests this member answered 200, from its own access log."""
        return sum(len(ACCESS_LINE.findall(p.read_text(errors="replace")))
                   for p in (self.home / "logs").glob("*.log*"))


@pytest.fixture
def members(tiny_gguf: Path, tmp_path: Path) -> Iterator[list[Member]]:
    ms = [Member(n, free_port(), tiny_gguf, tmp_path / n) for n in ("m1", "m2")]
    try:
        for m in ms:
            m.start()
        yield ms
    finally:
        for m in ms:
            m.stop()


@pytest.fixture
def pool_server(clean_env: Path, members: list[Member]) -> Iterator[LiveServer]:
    provider = RemoteProvider()
    rows = [provider.row_for("tater/direct", base_url=m.base_url) for m in members]
    for row in rows:
        provider.set_api_key(row.id, MEMBER_KEY)
    pool = PoolProvider.row_for("tiny", members=[r.id for r in rows], retry_seconds=RETRY_SECONDS)
    live = start_live_server(clean_env, [*rows, pool], pool.id)
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]


def ask(client: openai.OpenAI, n: int, *, stream: bool = False) -> list[str]:
    def one(i: int) -> str:
        messages = [{"role": "user", "content": f"request {i}"}]
        if stream:
            parts = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
                model="pool::tiny", messages=messages, max_tokens=6, temperature=0, stream=True)
                if c.choices]
            return "".join(parts)
        r = client.chat.completions.create(model="pool::tiny", messages=messages, max_tokens=6,
                                           temperature=0)
        assert r.model == "pool::tiny" and r.usage.completion_tokens == 6
        return r.choices[0].message.content or ""

    with ThreadPoolExecutor(max_workers=min(n, 8)) as ex:
        return list(ex.map(one, range(n)))


def answered(members: list[Member], total: int) -> list[int]:
    """Each member's answered count, once the access logs hold ``total`` (written just after
    each reply ends)."""
    deadline = time.monotonic() + 10
    while True:
        counts = [m.chats_answered() for m in members]
        if sum(counts) >= total or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


def status(live: LiveServer) -> dict:
    r = httpx.get(f"{live.base_url}/pools/pool::tiny", headers={"Authorization": f"Bearer {live.key}"})
    assert r.status_code == 200, r.text
    return r.json()


def test_pool_routes_fails_over_and_reports_health(pool_server: LiveServer,
                                                   members: list[Member]) -> None:
    m1 = members[0]
    client = pool_server.client()
    before = status(pool_server)
    assert before["loaded"] is False and [m["state"] for m in before["members"]] == ["untried"] * 2

    # concurrent requests are spread over both members (their own access logs count them)
    replies = ask(client, 12) + ask(client, 4, stream=True)
    assert all(replies)
    counts = answered(members, 16)
    assert sum(counts) == 16 and min(counts) >= 5, counts
    health = status(pool_server)
    assert health["loaded"] is True
    assert [m["served"] for m in health["members"]] == counts
    assert [m["state"] for m in health["members"]] == ["healthy", "healthy"]
    assert all(m["in_flight"] == 0 for m in health["members"])

    # one member stops mid-test: every request still succeeds, through the other
    m1.stop()
    t_stop = time.monotonic()
    assert all(ask(client, 6))
    assert answered(members, sum(counts) + 6) == [counts[0], counts[1] + 6]
    down, up = status(pool_server)["members"]
    # each request that picked it while it was still in the running (concurrent picks) failed over
    assert down["state"] == "unhealthy" and 1 <= down["failures"] <= 6, down
    assert "cannot reach the upstream server" in down["last_error"]
    assert 0 < down["retry_in_seconds"] <= RETRY_SECONDS
    assert up["state"] == "healthy" and up["served"] == counts[1] + 6

    # restarted: once the back-off has passed it is tried again and is healthy
    m1.start()
    time.sleep(max(0.0, RETRY_SECONDS - (time.monotonic() - t_stop)) + 0.2)
    assert all(ask(client, 4))
    back, _ = status(pool_server)["members"]
    assert back["state"] == "healthy" and back["retry_in_seconds"] == 0
    assert m1.chats_answered() > counts[0], "the restarted member got no requests"


def test_pool_status_for_unknown_and_non_pool_rows(pool_server: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {pool_server.key}"}
    r = httpx.get(f"{pool_server.base_url}/pools/nope", headers=headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "pool_not_found"
    member = pool_server.settings.current.models[0].id
    r = httpx.get(f"{pool_server.base_url}/pools/{member}", headers=headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "pool_not_found"
    assert httpx.get(f"{pool_server.base_url}/pools/pool::tiny").status_code == 401
