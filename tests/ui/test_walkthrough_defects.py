"""The defects a first-run walk-through found (issue 14), each reproduced against the real tray app
(offscreen Qt), the real server on a free port and the tiny llama.cpp model."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from PySide6.QtWidgets import QDialogButtonBox, QSystemTrayIcon

from app.settings import ModelRow
from tests.ui.conftest import chat, get_models
from tests.ui.hf_cache import cache_repo

Trigger = QSystemTrayIcon.ActivationReason.Trigger


@pytest.fixture
def good(tiny_gguf: Path) -> ModelRow:
    from app.providers.llama_cpp import LlamaCppProvider

    return LlamaCppProvider.row_for(str(tiny_gguf)).model_copy(update={"display_name": "Tiny"})


@pytest.fixture
def broken(tmp_path: Path) -> ModelRow:
    """A text file renamed .gguf, configured directly (the add dialogs now refuse it)."""
    bad = tmp_path / "broken.gguf"
    bad.write_text("this is a text file, not a model\n")
    return ModelRow(id="broken", provider="llama_cpp", source=str(bad), display_name="Broken")


def enable(shell) -> tuple[str, str]:
    shell.controller.set_api_enabled(True)
    return shell.services.keys.get(), shell.services.server.base_url


def failures_told(shell) -> list[str]:
    return [n.message for n in shell.controller.notifier.history if n.title == "A model failed to load"]


def press(window, which: str) -> None:
    std = QDialogButtonBox.StandardButton
    button = {"ok": std.Ok, "apply": std.Apply, "cancel": std.Cancel}[which]
    window.buttons.button(button).click()


# -- 1. a failed load throws out the working model ------------------------------------------------
def test_1_failed_load_keeps_the_working_model(shell, qtbot, good, broken) -> None:
    shell.services.settings.update(models=[good, broken], active_model=good.id)
    key, url = enable(shell)
    assert chat(url, key).status_code == 200
    hub = shell.services.hub
    assert hub.loaded_ids() == [good.id]
    shell.controller.preload(broken.id)  # Settings ▸ Models ▸ Load on the broken row
    qtbot.waitUntil(lambda: broken.id in shell.controller.failures, timeout=10000)
    qtbot.waitUntil(lambda: hub.loaded_ids() == [good.id], timeout=10000)  # the good one is back
    shell.tray.refresh()
    assert shell.tray.state.name == "idle"  # the active model is fine: no red icon
    assert chat(url, key).status_code == 200
    assert len(failures_told(shell)) == 1  # the user still hears about the broken one, once


# -- 2. green while the API cannot answer ---------------------------------------------------------
def test_2_icon_is_not_green_when_the_api_cannot_answer(shell, qtbot, good, broken) -> None:
    key, url = enable(shell)  # no model at all
    shell.tray.refresh()
    assert shell.tray.state.name != "idle" and "no model" in shell.tray.state.text.lower()
    assert chat(url, key).status_code == 503

    shell.services.settings.update(models=[good], active_model=good.id)
    shell.tray.refresh()
    assert shell.tray.state.name == "idle"
    shell.services.settings.update(models=[], active_model=None)  # the active model removed
    shell.tray.refresh()
    assert shell.tray.state.name != "idle"

    shell.services.settings.update(models=[good, broken], active_model=broken.id)
    assert chat(url, key).status_code >= 400
    qtbot.waitUntil(lambda: broken.id in shell.controller.failures, timeout=10000)
    shell.controller.preload(good.id)  # another model loads fine...
    qtbot.waitUntil(lambda: good.id in shell.services.hub.loaded_ids(), timeout=10000)
    shell.tray.refresh()
    assert shell.tray.state.name == "error"  # ...the active one is still broken
    assert broken.id in shell.tray.icon.toolTip()


# -- 3. one balloon per state change --------------------------------------------------------------
def test_3_a_broken_active_model_is_told_once(shell, qtbot, broken) -> None:
    shell.services.settings.update(models=[broken], active_model=broken.id)
    key, url = enable(shell)
    for _ in range(5):
        assert chat(url, key).status_code >= 400
    qtbot.wait(200)  # let the hub events reach the Qt thread
    assert len(failures_told(shell)) == 1
    shell.services.settings.update(models=[broken.model_copy(update={"display_name": "Renamed"})])
    chat(url, key)  # the row changed: a new state, told again
    qtbot.waitUntil(lambda: len(failures_told(shell)) == 2, timeout=5000)


# -- 4. the request log ---------------------------------------------------------------------------
def test_4_request_log_rows_say_what_happened(shell, qtbot, good) -> None:
    shell.services.settings.update(models=[good], active_model=good.id)
    key, url = enable(shell)
    log = shell.services.request_log
    assert get_models(url, "wrong-key").status_code == 401
    refused = log.records()[-1]
    assert (refused.status, refused.path, refused.app) == (401, "/v1/models", "httpx")
    assert "Incorrect API key" in refused.error

    assert chat(url, key, "no-such-model").status_code == 404
    missing = log.records()[-1]
    assert (missing.status, missing.path, missing.model) == (404, "/v1/chat/completions", "no-such-model")
    assert "does not exist" in missing.error

    r = httpx.post(f"{url}/chat/completions", timeout=60,
                   headers={"Authorization": f"Bearer {key}", "User-Agent": "OpenAI/Python 3.57.0"},
                   json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8,
                         "stream": True, "stream_options": {"include_usage": True}})
    assert r.status_code == 200
    qtbot.waitUntil(lambda: log.records()[-1].path == "/v1/chat/completions"
                    and log.records()[-1].stream, timeout=5000)
    streamed = log.records()[-1]
    assert streamed.app == "OpenAI Python SDK"
    assert streamed.ttft_s is not None and 0 < streamed.ttft_s <= streamed.latency_s
    assert streamed.decode_tokens_per_s and streamed.completion_tokens == 8
    decode_window = streamed.latency_s - streamed.ttft_s
    assert streamed.tokens_per_s == pytest.approx(7 / decode_window, rel=0.05)

    hydra = chat(url, key, "tater/hydra")
    assert hydra.status_code == 200
    row = log.records()[-1]
    usage = hydra.json()["usage"]
    assert (row.mode, row.prompt_tokens, row.completion_tokens) == (
        "hydra", usage["prompt_tokens"], usage["completion_tokens"])
    assert row.prompt_tokens > 0

    shell.open_request_log()
    window = shell.request_log_window
    qtbot.addWidget(window)
    window.table.selectRow(0)  # newest first: the Hydra row
    detail = window.show_selected_detail()
    assert detail is not None
    text = detail.text.toPlainText()
    assert "POST /v1/chat/completions" in text and "tater/hydra" in text and "mode: hydra" in text
    assert key not in text
    window.table.selectRow(3)  # the 401
    text = window.show_selected_detail().text.toPlainText()
    assert "Status: 401 — Incorrect API key" in text and "App: httpx" in text
    detail.close()


def test_4_the_first_request_rate_excludes_the_load(shell, qtbot, good) -> None:
    """The first request after a restart loads the model: its decode rate must not count that."""
    shell.services.settings.update(models=[good], active_model=good.id)
    key, url = enable(shell)
    assert chat(url, key, max_tokens=64).status_code == 200
    first = shell.services.request_log.records()[-1]
    assert chat(url, key, max_tokens=64).status_code == 200
    second = shell.services.request_log.records()[-1]
    assert first.tokens_per_s > 0.2 * second.tokens_per_s  # decode speed, not load or warm-up
    assert first.ttft_s is not None and second.ttft_s is not None


# -- 5. the Options hint does not overlap the JSON box --------------------------------------------
def test_5_options_hint_never_overlaps_the_options_box(shell, qtbot, good) -> None:
    from app.providers.remote import RemoteProvider

    remote = RemoteProvider.row_for("some-model", base_url="http://127.0.0.1:9/v1")
    shell.services.settings.update(models=[good, remote], active_model=good.id)
    shell.open_settings()
    window = shell.settings_window
    qtbot.addWidget(window)
    page = window.page("models")
    page.list.setCurrentRow(1)  # the remote key row appears
    page.form.set_error("options", "A very long error message. " * 12)
    qtbot.wait(50)
    row = page.form.rows["options"]
    hint = next(c for c in row.findChildren(type(row.error)) if c is not row.error)
    box = page.options_edit
    for a, b in ((box, hint), (box, row.error), (hint, row.error)):
        ga = a.geometry().translated(a.parentWidget().mapTo(window, a.parentWidget().rect().topLeft()))
        gb = b.geometry().translated(b.parentWidget().mapTo(window, b.parentWidget().rect().topLeft()))
        assert not ga.intersects(gb), (a, b, ga, gb)
    assert box.height() >= 60


# -- 6. one row's load result is not shown under another -----------------------------------------
def test_6_load_status_belongs_to_the_selected_row(shell, qtbot, good, broken) -> None:
    shell.services.settings.update(models=[good, broken], active_model=good.id)
    shell.open_settings()
    window = shell.settings_window
    qtbot.addWidget(window)
    page = window.page("models")
    page.list.setCurrentRow(0)
    page.load_button.click()
    qtbot.waitUntil(lambda: page.status.text().startswith("Loaded in"), timeout=10000)
    page.list.setCurrentRow(1)
    assert "Loaded" not in page.status.text()
    page.list.setCurrentRow(0)
    assert page.status.text() == "Loaded."


# -- 7. Load is disabled on unsaved rows ----------------------------------------------------------
def test_7_load_is_disabled_until_the_row_is_saved(shell, qtbot, good, tiny_gguf) -> None:
    shell.services.settings.update(models=[good], active_model=good.id)
    shell.open_settings()
    window = shell.settings_window
    qtbot.addWidget(window)
    page = window.page("models")
    assert page.load_button.isEnabled()
    page.name_edit.setText("Edited")  # an unsaved change
    assert not page.load_button.isEnabled()
    page.name_edit.setText("Tiny")  # back as saved
    assert page.load_button.isEnabled()
    assert page.add_path(str(tiny_gguf))  # a new row
    assert not page.load_button.isEnabled()
    press(window, "apply")
    assert page.load_button.isEnabled()


# -- 8. input is checked ---------------------------------------------------------------------------
def test_8_add_refuses_a_non_gguf_file_and_uncached_repos(shell, qtbot, tmp_path, monkeypatch,
                                                         tiny_gguf) -> None:
    fake = tmp_path / "notes.gguf"
    fake.write_text("hello")
    assert shell.controller.add_model_path(str(fake)) is None  # the menu's Add model…
    assert "GGUF signature" in shell.controller.notifier.history[-1].message
    shell.open_settings()
    window = shell.settings_window
    qtbot.addWidget(window)
    page = window.page("models")
    assert not page.add_path(str(fake))
    assert "GGUF signature" in page.status.text() and page.entries == []

    cache = tmp_path / "hf-cache"
    cache_repo(cache, "someone/Tiny-GGUF", {"tiny-q8_0.gguf": tiny_gguf.read_bytes(),
                                            "README.md": b"# tiny"})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert not page.add_cached("nobody/not-cached")
    assert "not in the local Hugging Face cache" in page.status.text() and page.entries == []
    assert page.add_cached("someone/Tiny-GGUF")
    added = page.entries[-1].data
    assert added["provider"] == "llama_cpp" and added["source"].endswith("tiny-q8_0.gguf")


# -- 9. Open log folder without a file manager ----------------------------------------------------
def test_9_open_log_folder_says_where_when_it_cannot_open(shell, monkeypatch, tmp_path) -> None:
    from PySide6.QtGui import QGuiApplication

    monkeypatch.setattr("app.ui.shell.QDesktopServices.openUrl", lambda _url: False)  # none registered
    assert not shell.open_log_folder()
    notice = shell.controller.notifier.history[-1]
    assert str(tmp_path / "logs") in notice.message and notice.level == "warning"
    assert QGuiApplication.clipboard().text() == str(tmp_path / "logs")


# -- 10. the only model becomes active; Make active; the active row is marked ---------------------
def test_10_active_model_in_settings(shell, qtbot, good, tiny_gguf) -> None:
    shell.open_settings()
    window = shell.settings_window
    qtbot.addWidget(window)
    page = window.page("models")
    assert page.add_path(str(tiny_gguf))
    press(window, "apply")
    s = shell.services.settings.current
    assert s.active_model == s.models[0].id  # the only model is the active one
    assert "(active)" in page.list.item(0).text()
    second = good.model_copy(update={"id": "tiny-two", "display_name": "Two"})
    page.add_row(second)
    press(window, "apply")
    assert shell.services.settings.current.active_model == s.models[0].id
    page.list.setCurrentRow(1)
    assert page.active_button.isEnabled()
    page.active_button.click()
    assert "(active)" in page.list.item(1).text() and "(active)" not in page.list.item(0).text()
    press(window, "apply")
    assert shell.services.settings.current.active_model == "tiny-two"


# -- 11. the mode applies to named models; unknown names --------------------------------------------
def test_11_mode_applies_to_a_request_naming_a_configured_model(shell, good) -> None:
    shell.services.settings.update(models=[good], active_model=good.id)
    key, url = enable(shell)
    shell.menu.mode_actions["hydra"].trigger()
    r = chat(url, key, good.id)
    assert r.status_code == 200 and "tater" in r.json()  # a Hydra turn (it carries its report)
    assert r.json()["model"] == good.id  # 15: the reply names the model that ran
    assert shell.services.request_log.records()[-1].mode == "hydra"
    assert chat(url, key, "tater/base").json().get("tater") is None  # an alias forces Direct
    shell.menu.refresh()
    assert "Hydra mode" in shell.menu.status_action.text()
    shell.menu.mode_actions["direct"].trigger()
    assert "tater" not in chat(url, key, good.id).json()

    unknown = chat(url, key, "gpt-4o")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    shell.services.settings.update(always_use_active_model=True)  # the opt-in
    answered = chat(url, key, "gpt-4o")
    assert answered.status_code == 200 and answered.json()["model"] == good.id


# -- 12. a port conflict shows the error badge ----------------------------------------------------
def test_12_port_conflict_shows_the_error_icon(qtbot, services) -> None:
    from app.server.runner import bind_socket
    from app.ui.shell import TrayApp

    busy = bind_socket("127.0.0.1", 0)
    try:
        services.settings.update(port=busy.getsockname()[1])
        app = TrayApp(services)
        app.start()
        assert not services.server.running
        assert app.tray.icon.icon().cacheKey() == app.tray.icons["error"].cacheKey()
        assert app.tray.shown_icon == "error"
        app.tray.hide()
        app.controller.bridge.detach()
    finally:
        busy.close()


# -- 13. the remote dialog ---------------------------------------------------------------------------
def test_13_remote_dialog_keeps_the_test_error_and_names_rows(shell, qtbot) -> None:
    from app.ui.pages.remote_dialog import RemoteDialog

    dialog = RemoteDialog()
    qtbot.addWidget(dialog)
    dialog.url.setText("http://127.0.0.1:9/v1")  # nothing listens on port 9
    dialog.test_connection()
    qtbot.waitUntil(lambda: not dialog.testing, timeout=10000)
    error = dialog.form.errors()["url"]
    assert "Could not connect" in error
    dialog.accept()
    errors = dialog.form.errors()
    assert errors["url"] == error and "test failed" in errors["models"]

    key, url = enable(shell)
    dialog.url.setText(url)
    dialog.key.setText(key)
    dialog.test_connection()
    qtbot.waitUntil(lambda: not dialog.testing, timeout=10000)
    dialog.models.item(0).setSelected(True)
    rows = dialog.rows()
    host = url.split("//")[1].removesuffix("/v1")
    assert rows[0].display_name == f"{rows[0].source} @ {host}"


# -- 14. desktop integration ------------------------------------------------------------------------
def test_14_first_run_installs_launcher_and_icon(qtbot, services, private_desktop) -> None:
    from app.ui import desktop_integration
    from app.ui.shell import TrayApp

    app = TrayApp(services)
    app.start()
    try:
        data = private_desktop / "xdg-data"
        launcher = data / "applications" / "tater-desktop.desktop"
        assert launcher.exists() and "Exec=" in launcher.read_text()
        assert "Icon=tater-desktop" in launcher.read_text()
        for size in (16, 48, 256):
            assert (data / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "tater-desktop.png").exists()
        assert desktop_integration.is_installed()
        assert not desktop_integration.install()  # already there: nothing rewritten
        desktop_integration.remove()
        assert not launcher.exists() and not desktop_integration.is_installed()
    finally:
        app.tray.hide()
        app.controller.bridge.detach()


# -- 15. small things -------------------------------------------------------------------------------
def test_15_file_dialog_starts_at_home_then_where_the_user_was(shell, monkeypatch, tmp_path,
                                                               tiny_gguf) -> None:
    from app.ui import dialogs

    seen: list[str] = []

    def fake_open(_parent, _title, folder, _filter):
        seen.append(folder)
        return str(tiny_gguf), ""

    monkeypatch.setattr("app.ui.dialogs.QFileDialog.getOpenFileName", fake_open)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dialogs, "_last_folder", {})
    dialogs.pick_gguf_file(None)
    dialogs.pick_gguf_file(None)
    assert seen == [str(Path.home()), str(tiny_gguf.parent)]


def test_15_left_click_off_says_so(shell) -> None:
    shell.tray.icon.activated.emit(Trigger)
    shell.tray.icon.activated.emit(Trigger)
    assert not shell.services.settings.current.api_enabled
    assert shell.controller.notifier.history[-1].title == "API off"


def test_tray_starts_the_idle_unload_janitor(qtbot, services, good) -> None:
    """Issue 18: "unload idle models after N minutes" works in the app, not only in `tater serve`."""
    from app.server.runner import bind_socket
    from app.ui.shell import TrayApp

    free = bind_socket("127.0.0.1", 0)
    port = free.getsockname()[1]
    free.close()
    hub = services.hub
    services.settings.update(models=[good], active_model=good.id, port=port,
                             memory={"max_loaded_models": 1, "idle_unload_minutes": 0.005})  # 0.3 s
    hub.janitor_interval = 0.1
    app = TrayApp(services)
    app.start()  # the tray's own start path, as the app runs it
    try:
        assert hub.janitor_running
        hub.load(good.id).result(timeout=30)
        assert hub.loaded_ids() == [good.id]
        qtbot.waitUntil(lambda: hub.loaded_ids() == [], timeout=5000)
    finally:
        app.tray.hide()
        app.controller.bridge.detach()
