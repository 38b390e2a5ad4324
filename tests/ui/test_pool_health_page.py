# ruff: noqa: F811 - pytest fixtures are imported by name
"""Settings ▸ Models shows a pool row's member health: a local llama.cpp member that answers and a
remote member whose server refuses connections, after real requests through the tray's server."""

from __future__ import annotations

import openai

from app.providers.llama_cpp import LlamaCppProvider
from app.providers.pool import PoolProvider
from app.providers.remote import RemoteProvider
from tests.providers.peer_fixtures import refusing_port  # noqa: F401 - fixture


def test_models_page_shows_pool_member_health(shell, qtbot, tiny_gguf, refusing_port: int) -> None:
    services = shell.services
    local = LlamaCppProvider.row_for(str(tiny_gguf))
    down = RemoteProvider.row_for("tater/direct", base_url=f"http://127.0.0.1:{refusing_port}/v1")
    pool = PoolProvider.row_for("mixed", members=[down.id, local.id], retry_seconds=600)
    services.settings.update(models=[local, down, pool], active_model=pool.id, api_enabled=True)
    key = services.keys.rotate()
    client = openai.OpenAI(base_url=services.server.base_url, api_key=key, max_retries=0, timeout=60)
    for _ in range(2):
        r = client.chat.completions.create(model=pool.id, messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=3, temperature=0)
        assert r.usage.completion_tokens == 3

    shell.open_settings()
    window = shell.settings_window
    qtbot.addWidget(window)
    page = window.page("models")
    page.list.setCurrentRow(2)
    label = page.pool_health
    assert label.isVisibleTo(window) and label.timer.isActive()
    lines = label.text().splitlines()
    assert lines[0] == "Pool members:"
    assert lines[1].startswith(f"✕ {down.id}: unhealthy · 0 in flight · 0 served · retried in ")
    assert "last error: cannot reach the upstream server" in lines[1]
    assert lines[2] == f"● {local.id}: healthy · 0 in flight · 2 served"
    assert page.list.item(2).toolTip() == f"{pool.id} · pool · 1 of 2 members healthy"

    page.list.setCurrentRow(0)  # a plain row: no pool health, no refreshing
    assert not label.isVisibleTo(window) and not label.timer.isActive()
