# ruff: noqa: F811 - pytest fixtures are imported by name
"""The Models page's "Get models…" dialog: on-disk finds, and Hub search, download with the
progress bar moving, cancel (the partial file stays, no row) and resume (stand-in Hub)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.hub_downloads import PARTIAL_SUFFIX, cache_dir
from app.settings import ModelRow
from tests.hub_standin import GGUF_REPO, HubStandIn, hub  # noqa: F401
from tests.test_disk_models import write_ollama_model


@pytest.fixture
def dialog(qtbot, hub: HubStandIn):  # type: ignore[no-untyped-def]
    from app.ui.pages.get_models_dialog import GetModelsDialog

    added: list[ModelRow] = []
    d = GetModelsDialog(added.append)
    qtbot.addWidget(d)
    d.added = added  # type: ignore[attr-defined]
    return d


def test_disk_models_are_listed_and_added(dialog, qtbot, tmp_path: Path, tiny_gguf: Path,  # type: ignore[no-untyped-def]
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    write_ollama_model(home / ".ollama" / "models", "qwen2.5", "0.5b", tiny_gguf.read_bytes())
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    dialog.scan_button.click()
    qtbot.waitUntil(lambda: dialog.disk_list.count() == 1, timeout=10_000)
    assert dialog.disk_list.item(0).text().startswith("qwen2.5:0.5b (Ollama)")
    dialog.disk_list.setCurrentRow(0)
    dialog.add_found_button.click()
    assert [r.id for r in dialog.added] == ["llama_cpp::ollama::qwen2.5:0.5b"]


def test_models_page_search_download_with_progress_cancel_and_resume(
        shell, qtbot, hub: HubStandIn) -> None:  # type: ignore[no-untyped-def]
    shell.open_settings("models")
    page = shell.settings_window.page("models")
    page.get_models()
    dialog = page.get_models_dialog
    assert dialog.isVisible()
    dialog.query.setText("tiny")
    dialog.search_button.click()
    qtbot.waitUntil(lambda: dialog.results.count() == 1, timeout=10_000)
    dialog.results.setCurrentRow(0)
    qtbot.waitUntil(lambda: dialog.choices.count() == 2, timeout=10_000)
    assert "tiny-chat-Q8_0.gguf" in dialog.choices.item(0).text()

    hub.throttle = 0.2  # ~15 pieces of 64 KiB: time to see the bar move and to cancel
    values: list[int] = []
    dialog.bar.valueChanged.connect(values.append)
    dialog.download_button.click()
    qtbot.waitUntil(lambda: len({v for v in values if v > 0}) >= 3, timeout=20_000)
    assert "s left" in dialog.hub_status.text()
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: "Cancelled" in dialog.hub_status.text(), timeout=20_000)
    assert page.list.count() == 0 and dialog.download_button.isEnabled()  # no row
    moving = [v for v in values if v > 0]
    assert len(set(moving)) >= 3 and moving == sorted(moving) and 0 < moving[-1] < 1000
    (partial,) = list(cache_dir().rglob(f"*{PARTIAL_SUFFIX}"))
    kept = partial.stat().st_size
    assert 0 < kept < 1 << 20

    dialog.results.setCurrentRow(-1)  # choose the repository again: the partial file shows
    dialog.results.setCurrentRow(0)
    qtbot.waitUntil(lambda: "already here: Download resumes" in (
        dialog.choices.item(0).text() if dialog.choices.count() else ""), timeout=10_000)

    hub.throttle = 0.0
    hub.seen.clear()
    values.clear()
    dialog.download_button.click()
    qtbot.waitUntil(lambda: page.list.count() == 1, timeout=20_000)
    assert dialog.bar.value() == 1000 and values[0] > 0  # the bar starts where it stopped
    assert [s.range for s in hub.seen if s.method == "GET"] == [f"bytes={kept}-"]
    assert Path(page.entries[0].data["source"]).is_file() and not partial.exists()
    dialog.close()
    assert shell.settings_window.apply()
    row_id = f"llama_cpp::{GGUF_REPO}::tiny-chat-Q8_0.gguf"
    saved = shell.services.settings.saved
    assert [r.id for r in saved.models] == [row_id] and saved.active_model == row_id
