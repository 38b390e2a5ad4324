"""Settings ▸ Hydra lists MCP servers with their state and tools, and imports mcpServers JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PySide6.QtWidgets import QDialogButtonBox

TOOLBOX = Path(__file__).parents[1] / "mcp" / "toolbox_server.py"


def press_ok(window) -> None:
    window.buttons.button(QDialogButtonBox.StandardButton.Ok).click()


def test_import_list_start_and_enable_mcp_tools(shell, qtbot, tmp_path, memory_keyring) -> None:
    claude = tmp_path / "claude_desktop_config.json"
    claude.write_text(json.dumps({"mcpServers": {
        "toolbox": {"command": sys.executable, "args": [str(TOOLBOX)],
                    "env": {"TOOLBOX_MODE": "test", "TOOLBOX_API_KEY": "k-123"}},
        "remote": {"type": "http", "url": "http://127.0.0.1:9/mcp",
                   "headers": {"Authorization": "Bearer remote-secret", "X-Team": "blue"}},
    }}))
    shell.open_settings()
    window = shell.settings_window
    page = window.page("hydra")
    panel = page.mcp_panel
    assert panel.serve.isChecked()  # Tater serves /mcp unless turned off
    assert panel.import_file(claude) == ["remote", "toolbox"]
    assert panel.row("toolbox")["State"] == "not saved yet"
    assert panel.row("remote")["Runs"] == "HTTP: http://127.0.0.1:9/mcp"
    panel.serve.setChecked(False)
    press_ok(window)
    assert not window.isVisible(), window.message.text()

    saved = shell.services.settings.current.mcp
    assert not saved.server_enabled
    toolbox, remote = saved.server("toolbox"), saved.server("remote")
    assert toolbox.env == {"TOOLBOX_MODE": "test"} and toolbox.secret_names == ["TOOLBOX_API_KEY"]
    assert remote.headers == {"X-Team": "blue"} and remote.secret_names == ["Authorization"]
    on_disk = Path(shell.services.settings.path).read_text()
    assert "remote-secret" not in on_disk and "k-123" not in on_disk
    assert memory_keyring.store[("tater-desktop", "mcp:remote:header:Authorization")] == \
        "Bearer remote-secret"
    assert memory_keyring.store[("tater-desktop", "mcp:toolbox:env:TOOLBOX_API_KEY")] == "k-123"

    shell.open_settings()
    panel = shell.settings_window.page("hydra").mcp_panel
    assert panel.row("toolbox")["State"] == "stopped" and panel.row("toolbox")["Tools"] == ""
    panel.refresh("toolbox")
    assert panel.row("toolbox")["State"] == "starting"
    qtbot.waitUntil(lambda: panel.row("toolbox")["State"] == "running", timeout=60_000)
    assert panel.row("toolbox")["Tools"] == "add, shout, crash, hang, garbage"
    panel.refresh("remote")
    qtbot.waitUntil(lambda: panel.row("remote")["State"].startswith("failed: "), timeout=60_000)
    assert "could not be started" in panel.row("remote")["State"]
    assert "remote" in panel.message.text()
    press_ok(shell.settings_window)

    shell.open_settings()
    window = shell.settings_window
    page = window.page("hydra")
    box = page.verba_boxes["mcp_toolbox_add"]  # the tool is a Verba now, off until enabled
    assert not box.isChecked() and "acts on the world" in box.text()
    box.setChecked(True)
    press_ok(window)
    assert shell.services.settings.current.verbas["mcp_toolbox_add"] == {"enabled": True}
    agent = shell.services.context.hydra
    enabled = [v.id for v in agent.verbas.enabled(shell.services.settings.current, agent.secrets)]
    assert "mcp_toolbox_add" in enabled  # the running Hydra offers it at once


def test_bad_json_is_reported_not_imported(shell, tmp_path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"mcpServers": {"x": {"type": "sse", "url": "http://127.0.0.1:1/sse"}}}')
    shell.open_settings()
    panel = shell.settings_window.page("hydra").mcp_panel
    assert panel.import_file(bad) == []
    assert "old SSE transport is not supported" in panel.message.text()
    bad.write_text("{nope")
    assert panel.import_file(bad) == [] and "not valid JSON" in panel.message.text()
    assert panel.table.topLevelItemCount() == 0
