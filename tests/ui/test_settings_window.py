"""The settings window: each page rejects bad input next to the field; Cancel writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialogButtonBox

from tests.ui.conftest import chat
from tests.ui.hf_cache import cache_repo


@pytest.fixture
def window(shell, qtbot):
    shell.services.settings.update(mode="direct")  # make sure settings.json exists
    shell.open_settings()
    w = shell.settings_window
    qtbot.addWidget(w)
    return w


def file_bytes(shell) -> bytes:
    return Path(shell.services.settings.path).read_bytes()


def press(window, which: str) -> None:
    std = QDialogButtonBox.StandardButton
    window.buttons.button({"ok": std.Ok, "cancel": std.Cancel, "apply": std.Apply}[which]).click()


def assert_cancel_leaves_file(window, shell, before: bytes) -> None:
    press(window, "ok")
    assert window.isVisible(), "OK must refuse invalid input"
    assert file_bytes(shell) == before
    press(window, "cancel")
    assert not window.isVisible()
    assert file_bytes(shell) == before


def test_server_page_errors_next_to_fields(window, shell) -> None:
    before = file_bytes(shell)
    page = window.page("server")
    window.show_page("server")
    page.port.setText("99999")
    page.origins.setPlainText("http://ok.example\nnot an origin")
    page.max_loaded.setText("two")
    page.idle_minutes.setText("-1")
    press(window, "ok")
    errors = page.form.errors()
    assert errors["port"] == "Must be between 1 and 65535."
    assert "not an origin" in errors["allowed_origins"]
    assert errors["max_loaded_models"] == "Enter a whole number."
    assert errors["idle_unload_minutes"] == "Must be at least 0."
    assert window.stack.currentWidget() is page
    # the message sits right under its field
    port_row = page.form.rows["port"]
    assert port_row.error.isVisibleTo(window) and port_row.error.parent() is port_row
    assert_cancel_leaves_file(window, shell, before)


def test_server_page_saves_valid_input(window, shell) -> None:
    page = window.page("server")
    window.show_page("server")
    page.allow_lan.setChecked(True)
    assert page.lan_warning.isVisibleTo(window) and "network" in page.lan_warning.text()
    page.allow_lan.setChecked(False)
    page.origins.setPlainText("http://localhost:3000/\n")
    page.always_active.setChecked(True)
    press(window, "ok")
    assert not window.isVisible(), (window.message.text(), [p.form.errors() for p in window.pages])
    s = shell.services.settings.current
    assert s.limits.allowed_origins == ["http://localhost:3000"]
    assert s.always_use_active_model


def test_hydra_page_errors(window, shell) -> None:
    before = file_bytes(shell)
    page = window.page("hydra")
    page.limit_edits["history_messages"].setText("500")
    page.limit_edits["max_steps"].setText("x")
    page.limit_edits["turn_timeout_seconds"].setText("0")
    press(window, "ok")
    errors = page.form.errors()
    assert "200" in errors["history_messages"]
    assert errors["max_steps"] == "Enter a whole number."
    assert errors["turn_timeout_seconds"] == "Must be more than 0."
    assert window.stack.currentWidget() is page
    assert_cancel_leaves_file(window, shell, before)


def test_hydra_page_verba_settings_typed(window, shell) -> None:
    from PySide6.QtWidgets import QCheckBox

    page = window.page("hydra")
    assert page.registry.get("web_fetch") is not None
    before = file_bytes(shell)
    page.verba_fields[("web_fetch", "max_bytes")].setText("lots")
    press(window, "ok")
    assert page.verba_forms["web_fetch"].errors() == {"max_bytes": "Enter a whole number."}
    assert_cancel_leaves_file(window, shell, before)

    shell.open_settings()
    page = shell.settings_window.page("hydra")
    allow = page.verba_fields[("web_fetch", "allow_private")]
    assert isinstance(allow, QCheckBox)
    allow.setChecked(True)
    page.verba_fields[("web_fetch", "max_bytes")].setText("1000")
    page.verba_fields[("web_fetch", "timeout_seconds")].setText("2.5")
    press(shell.settings_window, "ok")
    saved = shell.services.settings.current.verbas["web_fetch"]
    assert saved == {"allow_private": True, "max_bytes": 1000, "timeout_seconds": 2.5}


def test_hydra_page_saves_persona_and_verbas(window, shell, memory_keyring) -> None:
    page = window.page("hydra")
    assert page.registry is not None and page.verba_boxes, "Verbas from app.verbas are listed"
    page.persona.setPlainText("You are brief.")
    page.limit_edits["history_messages"].setText("12")
    vid = next(iter(page.verba_boxes))
    page.verba_boxes[vid].setChecked(not page.verba_boxes[vid].isChecked())
    wanted = page.verba_boxes[vid].isChecked()
    secret = next(((k, e) for k, e in page.verba_fields.items()
                   if page.registry.get(k[0]).setting_field(k[1]).secret), None)
    if secret:
        secret[1].setText("s3cret-value")
    press(window, "ok")
    assert not window.isVisible(), (window.message.text(), [p.form.errors() for p in window.pages])
    s = shell.services.settings.current
    assert s.hydra.persona == "You are brief." and s.hydra.history_messages == 12
    assert s.verbas[vid]["enabled"] is wanted
    if secret:
        (verba_id, name), _ = secret
        assert memory_keyring.store[("tater-desktop", f"verba:{verba_id}:{name}")] == "s3cret-value"
        assert "s3cret-value" not in file_bytes(shell).decode()


def test_key_page(window, shell, auto_confirm) -> None:
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QLineEdit

    shell.controller.set_api_enabled(True)
    key = shell.services.keys.get()
    window.reload()
    page = window.page("key")
    assert page.current.text() == key
    assert page.current.echoMode() == QLineEdit.EchoMode.Password
    page.reveal.click()
    assert page.current.echoMode() == QLineEdit.EchoMode.Normal
    page.copy.click()
    assert QGuiApplication.clipboard().text() == key
    page.regenerate.click()
    assert auto_confirm and shell.services.keys.get() != key
    assert page.current.text() == shell.services.keys.get()

    before = file_bytes(shell)
    page.own.setText("too short")
    press(window, "ok")
    assert page.form.errors()["own"] == "A key needs at least 16 characters."
    page.own.setText("has a space in it ok")
    press(window, "ok")
    assert "no spaces" in page.form.errors()["own"]
    assert_cancel_leaves_file(window, shell, before)

    shell.open_settings()
    page = shell.settings_window.page("key")
    page.own.setText("my-own-key-0123456789")
    press(shell.settings_window, "ok")
    assert shell.services.keys.get() == "my-own-key-0123456789"
    assert file_bytes(shell) == before  # the key is not a setting: the file is untouched


def test_models_page_errors(window, shell, tiny_gguf) -> None:
    page = window.page("models")
    assert page.add_path(str(tiny_gguf))
    press(window, "apply")
    before = file_bytes(shell)
    assert len(shell.services.settings.current.models) == 1

    page.add_path(str(tiny_gguf))  # same file again: id made unique
    assert page.entries[1].data["id"].endswith("-2")
    page.id_edit.setText(page.entries[0].data["id"])
    page.options_edit.setPlainText("{not json")
    press(window, "ok")
    errors = page.form.errors()
    assert "Not valid JSON" in errors["options"]
    assert "already has the id" in errors["id"]
    page.options_edit.setPlainText("[1, 2]")
    page.id_edit.setText("")
    press(window, "ok")
    errors = page.form.errors()
    assert "JSON object" in errors["options"]
    assert errors["id"]
    assert not page.add_path(str(tiny_gguf.parent / "missing.bin"))
    assert "Not added" in page.status.text()
    assert_cancel_leaves_file(window, shell, before)


def test_models_page_add_load_unload_remove(window, shell, qtbot, tiny_gguf) -> None:
    page = window.page("models")
    page.add_path(str(tiny_gguf))
    page.name_edit.setText("Tiny")
    page.options_edit.setPlainText(json.dumps({"n_batch": 256}))  # a llama.cpp option
    page.load_button.click()
    assert "Apply" in page.status.text()  # unsaved rows cannot load yet
    press(window, "apply")
    row = shell.services.settings.current.models[0]
    assert row.display_name == "Tiny" and row.options == {"n_batch": 256}
    page.load_button.click()
    qtbot.waitUntil(lambda: row.id in shell.services.hub.loaded_ids(), timeout=10000)
    qtbot.waitUntil(lambda: page.status.text().startswith("Loaded in"), timeout=3000)
    assert "loaded" in page.list.item(0).text()
    page.unload_button.click()
    assert shell.services.hub.loaded_ids() == []
    page.remove_selected()
    press(window, "ok")
    assert shell.services.settings.current.models == []


def test_models_page_remote_row_with_key(window, shell, qtbot, memory_keyring) -> None:
    """A remote row pointing at our own live server: Test connection lists its models."""
    from app.providers.remote import api_key_entry
    from app.ui.pages.remote_dialog import RemoteDialog

    shell.controller.set_api_enabled(True)
    key, url = shell.services.keys.get(), shell.services.server.base_url
    dialog = RemoteDialog(window)
    qtbot.addWidget(dialog)
    dialog.url.setText("not a url")
    dialog.test_connection()
    assert dialog.form.errors()["url"]
    dialog.url.setText(url)
    dialog.key.setText("wrong-key-123456789")
    dialog.test_connection()
    qtbot.waitUntil(lambda: not dialog.testing, timeout=5000)
    assert "API key" in dialog.form.errors()["key"]
    dialog.key.setText(key)
    dialog.test_connection()
    qtbot.waitUntil(lambda: not dialog.testing, timeout=5000)
    assert dialog.models.count() >= 1
    dialog.accept()
    assert dialog.form.errors()["models"] == "Pick at least one model."
    dialog.models.item(0).setSelected(True)
    dialog.accept()
    data = dialog.result_data()
    page = window.page("models")
    page.add_row(data["rows"][0], data["api_key"])
    press(window, "ok")
    row = shell.services.settings.current.models[0]
    assert row.provider == "remote" and row.options["base_url"] == url
    assert memory_keyring.store[("tater-desktop", api_key_entry(row.id))] == key
    assert key not in file_bytes(shell).decode()


@pytest.fixture
def open_peer():
    """A minimal OpenAI-style server without auth (as Ollama/LM Studio run) on a free port."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"object": "list", "data": [{"id": "peer-model", "object": "model"}]})
            code = 200 if self.path == "/v1/models" else 404
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_models_page_discovers_local_servers(window, shell, qtbot, monkeypatch, clean_env,
                                            open_peer) -> None:
    """Servers on this machine are offered; one click adds a row; one wanting a key says so."""
    from tests.conftest import start_live_server

    guarded = start_live_server(clean_env.parent / "other", [], None)
    try:
        guarded_port = int(guarded.base_url.rsplit(":", 1)[1].split("/")[0])
        monkeypatch.setattr("app.ui.pages.discovery_panel.DiscoveryPanel.extra_ports",
                            (open_peer, guarded_port, shell.services.server.port))
        page = window.page("models")
        page.discovery.search()
        qtbot.waitUntil(lambda: page.discovery.searched, timeout=10000)
        items = [page.discovery.results.item(i) for i in range(page.discovery.results.count())]
        texts = [i.text() for i in items]
        assert not any(f":{shell.services.server.port}/" in t for t in texts)  # not ourselves
        assert any(guarded.base_url in t and "wants an API key" in t for t in texts), texts
        peer = next(i for i in items if f":{open_peer}/" in i.text())
        assert peer.text().startswith("peer-model")
        page.discovery._add_item(peer)
        entry = page.entries[-1].data
        assert entry["provider"] == "remote" and entry["source"] == "peer-model"
        press(window, "ok")
        row = shell.services.settings.current.models[-1]
        assert row.options["base_url"] == f"http://127.0.0.1:{open_peer}/v1"
    finally:
        guarded.services.shutdown()


def test_ok_without_changes_does_not_rewrite(window, shell) -> None:
    before = file_bytes(shell)
    mtime = Path(shell.services.settings.path).stat().st_mtime_ns
    press(window, "ok")
    assert file_bytes(shell) == before
    assert Path(shell.services.settings.path).stat().st_mtime_ns == mtime


def test_routing_option_applies_to_next_request(window, shell, tiny_gguf) -> None:
    from app.providers.llama_cpp import LlamaCppProvider

    a = LlamaCppProvider.row_for(str(tiny_gguf))
    b = a.model_copy(update={"id": "tiny-b"})
    shell.services.settings.update(models=[a, b], active_model=a.id)
    shell.controller.set_api_enabled(True)
    key, url = shell.services.keys.get(), shell.services.server.base_url
    assert chat(url, key, "tiny-b").json()["model"] == "tiny-b"
    window.reload()
    window.page("server").always_active.setChecked(True)
    press(window, "ok")
    assert chat(url, key, "tiny-b").json()["model"] == a.id


def test_hydra_page_lists_broken_plugins(shell, qtbot, clean_env) -> None:
    from PySide6.QtWidgets import QLabel

    plugins = Path(shell.services.settings.config_dir) / "verbas"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "broken.py").write_text("def oops(:\n")
    shell.open_settings()
    page = shell.settings_window.page("hydra")
    texts = [lbl.text() for lbl in page.findChildren(QLabel)]
    assert any("broken.py could not be loaded" in t and "SyntaxError" in t for t in texts), texts


def test_saving_the_hydra_page_hands_new_plugins_to_the_running_agent(shell, clean_env) -> None:
    agent = shell.services.context.hydra
    assert agent is not None and "dice" not in agent.verbas
    plugins = Path(shell.services.settings.config_dir) / "verbas"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "dice.py").write_text(
        "from app.verbas import verba\n\n"
        "@verba(id='dice', name='Dice', description='Roll a die.')\n"
        "def roll(sides: int = 6) -> str:\n"
        "    return 'rolled 4'\n")
    shell.open_settings()
    window = shell.settings_window
    assert "dice" in window.page("hydra").verba_boxes
    press(window, "ok")
    assert "dice" in agent.verbas  # no restart needed


def test_open_log_folder_and_second_launch_commands(shell, monkeypatch, tmp_path) -> None:
    opened: list[str] = []
    monkeypatch.setattr("app.ui.shell.QDesktopServices.openUrl", lambda url: opened.append(url.toLocalFile()))
    shell.menu.log_folder_action.trigger()
    assert opened == [str(tmp_path / "logs")] and (tmp_path / "logs").is_dir()
    shell.handle_command("settings")
    assert shell.settings_window.isVisible()
    shell.handle_command("request-log")
    assert shell.request_log_window.isVisible()
    shell.handle_command("show")
    assert shell.menu.isVisible()
    shell.menu.hide()


def test_models_page_adds_folder_and_cached_repo(window, shell, tmp_path, monkeypatch) -> None:
    folder = tmp_path / "tiny-hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    page = window.page("models")
    monkeypatch.setattr("app.ui.dialogs.pick_model_folder", lambda *_a: str(folder))
    page.add_folder()
    entry = page.entries[-1].data
    assert entry["provider"] == "hf_transformers" and entry["source"] == str(folder)
    cache = tmp_path / "hf-cache"
    cache_repo(cache, "someone/tiny-model", {"config.json": b"{}"})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("app.ui.pages.models_page.QInputDialog.getItem",
                        lambda *_a: ("someone/tiny-model", True))
    page.add_from_cache()
    assert page.entries[-1].data["source"] == "someone/tiny-model"
    press(window, "ok")
    providers = [r.provider for r in shell.services.settings.current.models]
    assert providers == ["hf_transformers", "hf_transformers"]
