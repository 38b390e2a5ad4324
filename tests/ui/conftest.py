"""Fixtures for the tray app: real services with the real server on a free loopback port."""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

importlib.import_module("PySide6")
importlib.import_module("pytestqt")


@pytest.fixture(autouse=True)
def qt_garbage_on_main_thread() -> Iterator[None]:
    """Collect the previous tests' Qt objects here, on the main thread.

    Left to chance, Python's cyclic GC may run on a server or worker thread and free Qt
    wrappers there, which PySide defers to the main thread and can crash on.
    """
    gc.collect()
    yield
    gc.collect()


@pytest.fixture(autouse=True)
def private_desktop(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The launcher, icons and autostart entry the app installs go to a temp folder."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    return tmp_path


@pytest.fixture
def services(clean_env: Path) -> Iterator[object]:
    """Services on a temp config dir (no key yet, API off), server not started."""
    from app.services import build_services

    svc = build_services(clean_env, env={})
    yield svc
    svc.shutdown()


@pytest.fixture
def shell(qtbot: object, services: object) -> Iterator[object]:
    """The whole tray app (icon shown offscreen) with its server on a free port."""
    from app.ui.shell import TrayApp

    app = TrayApp(services)  # type: ignore[arg-type]
    app.tray.show()
    assert app.controller.start_server(host="127.0.0.1", port=0)
    yield app
    app.tray.hide()
    app.controller.bridge.detach()
    for w in (app.settings_window, app.request_log_window, app.get_models_dialog):
        if w is not None:
            w.close()


@pytest.fixture
def auto_confirm(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Answer every confirmation with Yes; records the titles asked."""
    asked: list[str] = []

    def yes(_parent: object, title: str, _text: str) -> bool:
        asked.append(title)
        return True

    monkeypatch.setattr("app.ui.dialogs.confirm", yes)
    return asked


def get_models(base_url: str, key: str | None) -> httpx.Response:
    """GET /v1/models with (or without) a bearer key."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{base_url}/models", headers=headers, timeout=10)


def chat(base_url: str, key: str, model: str | None = None, **extra: object) -> httpx.Response:
    """POST a one-message chat completion (max 4 tokens)."""
    body: dict[str, object] = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **extra}
    if model:
        body["model"] = model
    return httpx.post(f"{base_url}/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {key}"}, timeout=60)
