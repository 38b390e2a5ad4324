"""Fixtures for the hardening suite: the scripted models (tests/fakes.py) on the real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.settings import ModelRow
from tests.conftest import LiveServer, start_live_server
from tests.fakes import SCRIPTED, SCRIPTED_REMOTE, Script


@pytest.fixture
def scripted_server(clean_env: Path, script: Script) -> Iterator[LiveServer]:
    """The real server whose active model is the scripted local model; a remote one is row 2."""
    rows = [ModelRow(id="scripted::local", provider=SCRIPTED, source="-"),
            ModelRow(id="scripted::remote", provider=SCRIPTED_REMOTE, source="-",
                     options={"max_parallel": 3})]
    live = start_live_server(clean_env, rows, "scripted::local")
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]


def chat_body(prompt: str, **kw: object) -> dict:
    return {"messages": [{"role": "user", "content": prompt}], **kw}


def auth(live: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.key}"}


def post_chat(live: LiveServer, prompt: str, **kw: object) -> httpx.Response:
    """A three-token chat request (``timeout`` and body fields in ``kw``)."""
    return httpx.post(live.base_url + "/chat/completions", timeout=kw.pop("timeout", 30),
                      headers=auth(live), json={**chat_body(prompt, max_tokens=3), **kw})


def stream_lines(live: LiveServer, prompt: str) -> tuple[int, list[str]]:
    """Status and non-empty SSE lines of a streamed three-token chat request."""
    with httpx.stream("POST", live.base_url + "/chat/completions", timeout=30, headers=auth(live),
                      json=chat_body(prompt, max_tokens=3, stream=True)) as s:
        return s.status_code, [line for line in s.iter_lines() if line]
