"""Settings ▸ Models: the selected row's memory estimate, recomputed as its options are edited."""

from __future__ import annotations

import json
import threading

import pytest

from app.memory_estimate import MIB, NotEnoughMemory, check_row_fits, estimate_row
from app.settings import ModelRow
from app.ui.forms import ERROR_STYLE


def needs(row: ModelRow) -> str:
    """The start of the line for ``row``: ``Needs about X of memory (weights … + compute …)``."""
    total, _, parts = estimate_row(row).describe().partition(" (")
    return f"Needs about {total} of memory ({parts}"


def open_models(shell, qtbot, rows: list[ModelRow]):
    shell.services.settings.update(models=rows, active_model=rows[0].id)
    shell.open_settings()
    qtbot.addWidget(shell.settings_window)
    return shell.settings_window.page("models")


def test_a_gguf_rows_estimate_follows_its_edited_options(shell, qtbot, tiny_gguf) -> None:
    from app.providers.llama_cpp import LlamaCppProvider
    from app.providers.remote import RemoteProvider

    row = LlamaCppProvider.row_for(str(tiny_gguf), n_ctx=1024, parallel=4)
    remote = RemoteProvider.row_for("m", base_url="http://127.0.0.1:9/v1")
    page = open_models(shell, qtbot, [row, remote])
    label = page.footprint
    qtbot.waitUntil(lambda: needs(row) in label.text(), timeout=5000)
    assert label.isVisible() and "x 4 slots" in label.text() and label.text().endswith(" free.")

    options = json.loads(page.options_edit.toPlainText())
    page.options_edit.setPlainText(json.dumps({**options, "parallel": 1}))
    one_slot = row.model_copy(update={"options": {"n_ctx": 1024, "parallel": 1}})
    assert needs(one_slot) != needs(row)
    qtbot.waitUntil(lambda: needs(one_slot) in label.text(), timeout=5000)
    assert "slots" not in label.text()

    page.options_edit.setPlainText("{not json")  # the last line stays, nothing breaks
    qtbot.wait(500)
    assert needs(one_slot) in label.text()
    page.options_edit.setPlainText(json.dumps({**options, "parallel": 1}))
    page.typed_edits["context"].setText("2048")
    bigger = row.model_copy(update={"options": {"n_ctx": 2048, "parallel": 1}})
    qtbot.waitUntil(lambda: needs(bigger) in label.text(), timeout=5000)

    page.list.setCurrentRow(1)  # a remote row has no estimate: hidden at once, and stays so
    assert label.isHidden()
    qtbot.waitUntil(lambda: label.answered is not None and label.answered.provider == "remote",
                    timeout=5000)
    assert label.isHidden() and label.text() == ""


def test_a_row_that_would_not_fit_says_so(shell, qtbot, tiny_gguf, monkeypatch) -> None:
    from app.providers.llama_cpp import LlamaCppProvider

    small = 2 * MIB
    monkeypatch.setattr("app.ui.pages.footprint.available_memory", lambda: small)
    monkeypatch.setattr("app.ui.pages.footprint.weights_in_ram", lambda _row: True)
    row = LlamaCppProvider.row_for(str(tiny_gguf), n_ctx=1024)
    with pytest.raises(NotEnoughMemory):  # what the load itself would do
        check_row_fits(row, available=small)
    page = open_models(shell, qtbot, [row])
    label = page.footprint
    qtbot.waitUntil(lambda: "would be refused" in label.text(), timeout=5000)
    assert needs(row) in label.text() and "only 2.0 MiB is free" in label.text()
    assert label.styleSheet() == ERROR_STYLE


def test_a_transformers_rows_estimate_is_shown(shell, qtbot, tiny_hf_folder) -> None:
    from app.providers.hf_transformers import TransformersProvider

    row = TransformersProvider.row_for(str(tiny_hf_folder), context_size=256)
    page = open_models(shell, qtbot, [row])
    qtbot.waitUntil(lambda: needs(row) in page.footprint.text(), timeout=15000)
    assert page.footprint.isVisible()


def test_a_stale_estimate_is_never_shown(qtbot, monkeypatch, tiny_gguf) -> None:
    """The answer for options edited since arrives last, and is dropped."""
    from app.providers.llama_cpp import LlamaCppProvider
    from app.ui.pages import footprint

    release, started = threading.Event(), threading.Event()
    real = footprint.measure

    def slow_for_four_slots(row: ModelRow):
        if row.options.get("parallel") == 4:
            started.set()
            release.wait(10)
        return real(row)

    monkeypatch.setattr(footprint, "measure", slow_for_four_slots)
    label = footprint.FootprintLabel()
    qtbot.addWidget(label)
    owner = object()
    four = LlamaCppProvider.row_for(str(tiny_gguf), n_ctx=512, parallel=4)
    one = four.model_copy(update={"options": {"n_ctx": 512, "parallel": 1}})
    label.show_row(owner, four)
    qtbot.waitUntil(started.is_set, timeout=5000)
    label.show_row(owner, one)
    qtbot.waitUntil(lambda: label.answered is one, timeout=5000)
    release.set()
    qtbot.wait(300)  # the four-slot answer arrives now
    assert needs(one) in label.text() and "slots" not in label.text()
