"""The status window (state, models, requests, apps, one-click API switch), Try it through the real
API, and the tray menu's "Connect an app" / "Copy model id"."""

from __future__ import annotations

import tomllib

import pytest
from PySide6.QtGui import QGuiApplication

from tests.ui.conftest import chat


@pytest.fixture
def live(shell, tiny_gguf):
    from app.providers.llama_cpp import LlamaCppProvider

    row = LlamaCppProvider.row_for(str(tiny_gguf)).model_copy(update={"display_name": "Tiny"})
    shell.services.settings.update(models=[row], active_model=row.id)
    shell.controller.set_api_enabled(True)
    return shell, row


def test_status_window_shows_api_model_mode_requests_and_apps(live, qtbot) -> None:
    shell, row = live
    key, url = shell.services.keys.get(), shell.services.server.base_url
    assert chat(url, key).status_code == 200
    shell.menu.status_window_action.trigger()
    window = shell.status_window
    qtbot.addWidget(window)
    assert window.isVisible()
    assert "API on" in window.api_label.text() and url in window.api_label.text()
    assert "Tiny" in window.model_label.text() and row.id in window.model_label.text()
    assert window.mode_label.text().startswith("Direct")
    from app.memory_estimate import estimate_row

    # its footprint: the weights, every parallel slot's KV cache and the scratch
    assert f"Tiny (≈ {estimate_row(row).describe()})" in window.loaded_label.text()
    assert "x 4 slots" in window.loaded_label.text()
    assert "1 served" in window.requests_label.text()
    assert "httpx (1)" in window.apps_label.text()
    assert "/v1/chat/completions → 200" in window.recent_label.text()
    assert float(window.rate_label.text().split()[0]) > 0

    window.api_button.click()  # one click turns it off...
    assert not shell.services.settings.current.api_enabled
    assert "API off" in window.api_label.text() and window.api_button.text() == "Turn API on"
    window.api_button.click()  # ...and on again
    assert shell.services.settings.current.api_enabled


def test_try_it_answers_through_the_real_api(live, qtbot) -> None:
    shell, row = live
    shell.open_status()
    window = shell.status_window
    qtbot.addWidget(window)
    window.message_edit.setText("Say hello")
    window.send_button.click()
    qtbot.waitUntil(lambda: not window.sending, timeout=60000)
    answer = window.answer.toPlainText()
    assert answer and not answer.startswith("Failed"), answer
    record = shell.services.request_log.records()[-1]
    assert (record.path, record.status, record.model) == ("/v1/chat/completions", 200, row.id)
    assert record.app == "Tater (Try it)" and "Say hello" in record.body
    assert "Tater (Try it) (1)" in window.apps_label.text()


def test_try_it_shows_the_api_error(live, qtbot) -> None:
    shell, _row = live
    shell.services.settings.update(models=[], active_model=None)
    shell.open_status()
    window = shell.status_window
    qtbot.addWidget(window)
    window.send()
    qtbot.waitUntil(lambda: not window.sending, timeout=30000)
    assert window.answer.toPlainText().startswith("Failed: HTTP 503")


def test_connect_an_app_copies_live_setups(live) -> None:
    shell, row = live
    key, url = shell.services.keys.get(), shell.services.server.base_url
    assert list(shell.menu.connect_actions) == ["codex", "claude_code", "openai_python", "openai_js",
                                                "curl", "base_url"]
    shell.menu.connect_actions["codex"].trigger()
    text = QGuiApplication.clipboard().text()
    toml_part = text.split("# 2.")[0]
    config = tomllib.loads(toml_part)
    assert config["model"] == row.id
    assert config["model_providers"]["tater"]["base_url"] == url
    assert f"TATER_API_KEY={key}" in text
    shell.menu.connect_actions["claude_code"].trigger()
    text = QGuiApplication.clipboard().text()
    assert f"ANTHROPIC_BASE_URL={url.removesuffix('/v1')}" in text and key in text and row.id in text
    shell.menu.connect_actions["base_url"].trigger()
    assert QGuiApplication.clipboard().text().splitlines()[:2] == [f"Base URL: {url}", f"API key: {key}"]
    shell.menu.copy_model_action.trigger()
    assert QGuiApplication.clipboard().text() == row.id


def test_connect_without_a_key_says_how_to_get_one(shell) -> None:
    QGuiApplication.clipboard().setText("unchanged")
    shell.menu.connect_actions["curl"].trigger()
    assert QGuiApplication.clipboard().text() == "unchanged"
    assert shell.controller.notifier.history[-1].title == "No API key yet"
    shell.menu.copy_model_action.trigger()  # no model: the alias that means "the active model"
    assert QGuiApplication.clipboard().text() == "tater/base"
