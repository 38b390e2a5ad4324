"""The tray and its menu against the real server (offscreen Qt, in-memory keyring)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QSystemTrayIcon

from tests.ui.conftest import chat, get_models

Trigger = QSystemTrayIcon.ActivationReason.Trigger


def test_left_click_toggles_api_404_200(shell, qtbot, memory_keyring) -> None:
    url = shell.services.server.base_url
    assert shell.tray.state.name == "off"
    assert url in shell.tray.icon.toolTip()
    assert get_models(url, None).status_code == 404

    shell.tray.icon.activated.emit(Trigger)  # first enable: key created + copied + told
    key = shell.services.keys.get()
    assert key and memory_keyring.store[("tater-desktop", "openai-api-key")] == key
    assert QGuiApplication.clipboard().text() == key
    assert any("copied" in n.message for n in shell.controller.notifier.history)
    assert get_models(url, key).status_code == 200
    assert (shell.tray.state.name, shell.tray.state.text) == ("error", "API on, no model")  # on, can't answer
    assert shell.menu.enable_action.isChecked()

    shell.tray.icon.activated.emit(Trigger)
    assert get_models(url, key).status_code == 404
    assert shell.tray.state.name == "off"
    assert shell.controller.notifier.history[-1].title == "API off"  # the click says what it did
    assert not shell.menu.enable_action.isChecked()
    shell.tray.icon.activated.emit(Trigger)  # second enable reuses the key
    assert shell.services.keys.get() == key
    assert get_models(url, key).status_code == 200


def test_copy_api_key_puts_keyring_key_on_clipboard(shell, memory_keyring) -> None:
    QGuiApplication.clipboard().setText("something else")
    assert not shell.controller.copy_api_key()  # no key yet: says so, copies nothing
    assert QGuiApplication.clipboard().text() == "something else"
    memory_keyring.store[("tater-desktop", "openai-api-key")] = "tater-" + "ab" * 32
    shell.menu.copy_key_action.trigger()
    assert QGuiApplication.clipboard().text() == "tater-" + "ab" * 32


def test_copy_base_url(shell) -> None:
    shell.menu.copy_url_action.trigger()
    assert QGuiApplication.clipboard().text() == shell.services.server.base_url


def test_regenerate_old_key_401_new_200(shell, auto_confirm) -> None:
    url = shell.services.server.base_url
    shell.menu.enable_action.trigger()
    old = shell.services.keys.get()
    assert get_models(url, old).status_code == 200
    shell.menu.regenerate_action.trigger()
    assert auto_confirm == ["Regenerate the API key?"]
    new = shell.services.keys.get()
    assert new and new != old
    assert QGuiApplication.clipboard().text() == new
    assert get_models(url, old).status_code == 401
    assert get_models(url, new).status_code == 200


def test_regenerate_cancelled_keeps_key(shell, monkeypatch) -> None:
    monkeypatch.setattr("app.ui.dialogs.confirm", lambda *_a: False)
    shell.menu.enable_action.trigger()
    old = shell.services.keys.get()
    shell.menu.regenerate_action.trigger()
    assert shell.services.keys.get() == old
    assert get_models(shell.services.server.base_url, old).status_code == 200


def test_keyring_unavailable_says_what_to_do_and_stays_off(shell, tmp_path) -> None:
    import keyring
    from keyring.backends.fail import Keyring as FailKeyring

    keyring.set_keyring(FailKeyring())  # the conftest fixture restores the previous backend
    shell.tray.icon.activated.emit(Trigger)
    assert not shell.services.settings.current.api_enabled
    notice = shell.controller.notifier.history[-1]
    assert notice.level == "error" and "keyring" in notice.message.lower()
    assert "TATER_OPENAI_API_KEY" in notice.message
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not any("tater-" in p.read_text(errors="ignore") for p in written)


def test_port_in_use_notifies_and_keeps_running(qtbot, services) -> None:
    from app.server.runner import bind_socket
    from app.ui.shell import TrayApp

    busy = bind_socket("127.0.0.1", 0)
    port = busy.getsockname()[1]
    try:
        app = TrayApp(services)
        app.tray.show()
        assert not app.controller.start_server(host="127.0.0.1", port=port)
        app.tray.refresh()
        assert app.tray.state.name == "error"
        assert "already in use" in app.controller.notifier.history[-1].message
        assert "already in use" in app.tray.icon.toolTip()
        # the user picks another port: the app starts the server then
        free = bind_socket("127.0.0.1", 0)
        new_port = free.getsockname()[1]
        free.close()
        services.settings.update(port=new_port)
        qtbot.waitUntil(lambda: services.server.running, timeout=5000)
        assert services.server.port == new_port
        app.tray.refresh()
        assert app.tray.state.name == "off"
        app.tray.hide()
        app.controller.bridge.detach()
    finally:
        busy.close()


@pytest.fixture
def gguf_rows(tiny_gguf: Path):
    from app.providers.llama_cpp import LlamaCppProvider

    a = LlamaCppProvider.row_for(str(tiny_gguf))
    b = a.model_copy(update={"id": "tiny-b", "display_name": "Tiny B"})
    return a, b


def test_mode_radio_changes_mode_of_unaliased_request(shell, gguf_rows) -> None:
    a, _ = gguf_rows
    shell.services.settings.update(models=[a], active_model=a.id)
    shell.menu.enable_action.trigger()
    key, url = shell.services.keys.get(), shell.services.server.base_url
    shell.menu.refresh()
    assert shell.menu.mode_actions["direct"].isChecked()
    assert chat(url, key).status_code == 200
    shell.menu.mode_actions["hydra"].trigger()
    assert shell.services.settings.current.mode == "hydra"
    chat(url, key)
    shell.menu.mode_actions["direct"].trigger()
    assert chat(url, key).status_code == 200
    modes = [r.mode for r in shell.services.request_log.records() if r.path.endswith("/completions")]
    assert modes == ["direct", "hydra", "direct"]


def test_picking_model_row_changes_model_of_next_request(shell, qtbot, gguf_rows) -> None:
    a, b = gguf_rows
    shell.services.settings.update(models=[a, b], active_model=a.id)
    shell.menu.enable_action.trigger()
    key, url = shell.services.keys.get(), shell.services.server.base_url
    shell.menu.refresh()
    assert set(shell.menu.model_actions) == {a.id, b.id}
    assert shell.menu.model_actions[a.id].isChecked()
    assert chat(url, key).json()["model"] == a.id
    shell.menu.model_actions[b.id].trigger()
    assert shell.services.settings.current.active_model == b.id
    qtbot.waitUntil(lambda: b.id in shell.services.hub.loaded_ids(), timeout=10000)  # preloaded
    assert chat(url, key).json()["model"] == b.id
    shell.menu.refresh()
    assert shell.menu.model_actions[b.id].isChecked()
    assert "(loaded)" in shell.menu.model_actions[b.id].text()
    assert "Tiny B" in shell.menu.status_action.text()


def test_add_model_and_unload(shell, qtbot, tiny_gguf, monkeypatch) -> None:
    monkeypatch.setattr("app.ui.dialogs.pick_gguf_file", lambda _p: str(tiny_gguf))
    row_id = shell.controller.add_model_dialog()
    assert row_id and shell.services.settings.current.active_model == row_id
    qtbot.waitUntil(lambda: row_id in shell.services.hub.loaded_ids(), timeout=10000)
    assert shell.controller.unload_models() == [row_id]
    assert shell.services.hub.loaded_ids() == []


def test_failed_load_notifies_and_shows_error(shell, qtbot, tmp_path) -> None:
    from app.settings import ModelRow

    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf")
    row = ModelRow(id="broken", provider="llama_cpp", source=str(bad))
    shell.services.settings.update(models=[row])
    shell.controller.set_api_enabled(True)
    shell.controller.pick_model("broken")
    qtbot.waitUntil(lambda: shell.controller.load_error is not None, timeout=10000)
    shell.tray.refresh()
    assert shell.tray.state.name == "error"
    assert shell.controller.notifier.history[-1].title == "A model failed to load"


def test_hydra_tools_and_start_at_login(shell, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    shell.menu.hydra_tools_action.trigger()
    assert shell.services.settings.current.hydra_tools_allowed
    shell.menu.autostart_action.trigger()
    entry = tmp_path / "xdg" / "autostart" / "tater-desktop.desktop"
    assert entry.exists() and "Exec=" in entry.read_text()
    assert shell.services.settings.current.start_at_login
    shell.menu.autostart_action.trigger()
    assert not entry.exists()


def test_status_line_counts_requests(shell, qtbot) -> None:
    shell.menu.enable_action.trigger()
    key, url = shell.services.keys.get(), shell.services.server.base_url
    get_models(url, key)
    qtbot.waitUntil(lambda: "1 request" in shell.menu.status_action.text(), timeout=3000)
    assert url in shell.menu.status_action.text()
    assert "model: none selected" in shell.menu.status_action.text()


def test_quit_stops_server_and_unloads(shell, qtbot, gguf_rows) -> None:
    a, _ = gguf_rows
    shell.services.settings.update(models=[a], active_model=a.id)
    shell.controller.preload(a.id)
    qtbot.waitUntil(lambda: a.id in shell.services.hub.loaded_ids(), timeout=10000)
    shell.menu.quit_action.trigger()
    assert not shell.services.server.running
    assert shell.services.hub.loaded_ids() == []
    assert shell.quitter.seconds is not None and shell.quitter.seconds < 6


def test_quit_cancels_a_hung_request_within_seconds(shell, qtbot) -> None:
    """An upstream that never answers: Quit still returns within the graceful timeout."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx

    from app.providers.remote import RemoteProvider

    release = threading.Event()

    class Hung(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            release.wait(30)

        def log_message(self, *_a: object) -> None:
            pass

    peer = ThreadingHTTPServer(("127.0.0.1", 0), Hung)
    peer.daemon_threads = True
    threading.Thread(target=peer.serve_forever, daemon=True).start()
    try:
        row = RemoteProvider.row_for("slow", base_url=f"http://127.0.0.1:{peer.server_address[1]}/v1")
        shell.services.settings.update(models=[row], active_model=row.id)
        shell.controller.set_api_enabled(True)
        key, url = shell.services.keys.get(), shell.services.server.base_url
        outcome: list[object] = []

        def client() -> None:
            try:
                outcome.append(chat(url, key).status_code)
            except httpx.HTTPError as exc:
                outcome.append(type(exc).__name__)

        t = threading.Thread(target=client, daemon=True)
        t.start()
        qtbot.waitUntil(lambda: shell.services.request_log.in_flight == 1, timeout=5000)

        def generating() -> bool:
            shell.tray.refresh()
            return shell.tray.state.name == "generating"

        qtbot.waitUntil(generating, timeout=5000)  # "loading" while the remote row opens
        started = time.monotonic()
        shell.quitter.quit()
        took = time.monotonic() - started
        t.join(10)
        assert took < 8, took
        assert not shell.services.server.running
        assert outcome and outcome[0] != 200, outcome  # cancelled, not left hanging
    finally:
        release.set()
        peer.shutdown()
        peer.server_close()


def test_each_state_has_its_own_icon(shell) -> None:
    from app.resources import TRAY_STATES

    keys = {state: shell.tray.icons[state].pixmap(22, 22).toImage() for state in TRAY_STATES}
    assert all(not img.isNull() for img in keys.values())
    images = list(keys.values())
    assert all(images[i] != images[j] for i in range(len(images)) for j in range(i + 1, len(images)))


def test_moving_a_running_server_to_a_busy_port_notifies(shell, qtbot, services) -> None:
    from app.server.runner import bind_socket

    services.follow_settings()
    busy = bind_socket("127.0.0.1", 0)
    try:
        services.settings.update(host="127.0.0.1", port=busy.getsockname()[1])
        qtbot.waitUntil(lambda: any(n.title == "The API server could not move"
                                    for n in shell.controller.notifier.history), timeout=8000)
        assert "already in use" in shell.controller.notifier.history[-1].message
        shell.tray.refresh()
        assert shell.tray.state.name == "error"
    finally:
        busy.close()
