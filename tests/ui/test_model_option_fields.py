"""Settings ▸ Models: context size, GPU layers, threads and chat template as typed fields."""

from __future__ import annotations

import json

from PySide6.QtWidgets import QDialogButtonBox

from app.ui.pages.option_fields import merge_options, split_options


def press(window, which: str) -> None:
    std = QDialogButtonBox.StandardButton
    window.buttons.button({"ok": std.Ok, "apply": std.Apply}[which]).click()


def test_fields_map_to_each_runtimes_own_keys() -> None:
    typed, rest = split_options("llama_cpp", {"n_ctx": 4096, "n_gpu_layers": 0, "flash_attn": True})
    assert typed == {"context": "4096", "gpu_layers": "0"} and rest == {"flash_attn": True}
    options, errors = merge_options("hf_transformers", {"context": "2048", "threads": "2"}, {})
    assert options == {"context_size": 2048, "threads": 2} and errors == {}
    _, errors = merge_options("llama_cpp", {"context": "lots", "threads": "0"}, {})
    assert set(errors) == {"context", "threads"}
    assert merge_options("remote", {"context": "4096"}, {"base_url": "http://x/v1"})[0] == {
        "base_url": "http://x/v1"}


def test_typed_fields_save_load_and_reject_bad_input(shell, qtbot, tiny_gguf) -> None:
    from app.providers.llama_cpp import LlamaCppProvider
    from app.ui.pages.option_fields import help_text

    row = LlamaCppProvider.row_for(str(tiny_gguf), n_ctx=1024, seed=7)
    shell.services.settings.update(models=[row], active_model=row.id)
    shell.open_settings()
    window = shell.settings_window
    qtbot.addWidget(window)
    page = window.page("models")
    assert page.typed_edits["context"].text() == "1024"  # a field, not JSON
    assert json.loads(page.options_edit.toPlainText()) == {"seed": 7}
    assert not page.form.rows["gpu_layers"].isHidden()
    assert page.form.rows["threads"].hint.text() == help_text("threads", "llama_cpp")

    page.typed_edits["context"].setText("not a number")
    press(window, "apply")
    assert "whole number" in page.form.errors()["context"]
    assert shell.services.settings.current.models[0].options == {"n_ctx": 1024, "seed": 7}

    page.typed_edits["context"].setText("2048")
    page.typed_edits["threads"].setText("2")
    assert not page.load_button.isEnabled()  # an unsaved change
    press(window, "apply")
    saved = shell.services.settings.current.models[0]
    assert saved.options == {"n_ctx": 2048, "n_threads": 2, "seed": 7}
    assert page.load_button.isEnabled()
    page.load_button.click()
    qtbot.waitUntil(lambda: row.id in shell.services.hub.loaded_ids(), timeout=10000)
    model = shell.services.hub.load(row.id).result()
    assert model.context_length == 2048  # the runtime got the typed value

    page.provider_box.setCurrentText("hf_transformers")  # the help follows the row's runtime
    assert page.form.rows["threads"].hint.text() == help_text("threads", "hf_transformers")


def test_remote_rows_hide_the_local_fields(shell, qtbot) -> None:
    from app.providers.remote import RemoteProvider

    remote = RemoteProvider.row_for("m", base_url="http://127.0.0.1:9/v1")
    shell.services.settings.update(models=[remote])
    shell.open_settings()
    page = shell.settings_window.page("models")
    qtbot.addWidget(shell.settings_window)
    assert all(page.form.rows[name].isHidden() for name in ("context", "gpu_layers", "threads",
                                                            "chat_template"))


def test_help_and_bounds_come_from_the_runtimes_options_models() -> None:
    from app.providers.row_options import LlamaCppOptions, TransformersOptions
    from app.ui.pages.option_fields import help_text, lowest

    assert help_text("gpu_layers") == LlamaCppOptions.model_fields["n_gpu_layers"].description
    assert help_text("threads", "hf_transformers") == TransformersOptions.model_fields["threads"].description
    assert help_text("threads", "llama_cpp") == LlamaCppOptions.model_fields["n_threads"].description
    assert help_text("threads") == help_text("threads", "llama_cpp")  # no runtime: the first one's
    assert help_text("threads", "llama_cpp") != help_text("threads", "hf_transformers")
    assert (lowest("llama_cpp", "context"), lowest("llama_cpp", "gpu_layers")) == (16, -1)
    assert lowest("hf_transformers", "threads") == 1 and lowest("remote", "context") is None


def test_unknown_or_bad_options_are_refused_and_nothing_saved(shell, qtbot, tiny_gguf) -> None:
    from app.providers.llama_cpp import LlamaCppProvider

    row = LlamaCppProvider.row_for(str(tiny_gguf), n_ctx=1024)
    shell.services.settings.update(models=[row], active_model=row.id)
    shell.open_settings()
    window = shell.settings_window
    qtbot.addWidget(window)
    page = window.page("models")

    tip = page.options_edit.toolTip()  # the runtime's other options, with their help
    assert "parallel: Requests generated at the same time" in tip and "n_ctx:" not in tip

    page.options_edit.setPlainText('{"n_ctxx": 2048}')
    press(window, "apply")
    message = page.form.errors()["options"]
    assert "Unknown option 'n_ctxx' for llama_cpp (known: n_ctx, n_gpu_layers" in message
    assert shell.services.settings.current.models[0].options == {"n_ctx": 1024}

    page.options_edit.setPlainText('{"parallel": "lots"}')
    press(window, "apply")
    assert "Option 'parallel' for llama_cpp" in page.form.errors()["options"]
    assert shell.services.settings.current.models[0].options == {"n_ctx": 1024}

    page.options_edit.setPlainText('{"parallel": 2, "flash_attn": true}')
    press(window, "apply")
    assert "options" not in page.form.errors()
    assert shell.services.settings.current.models[0].options == {
        "n_ctx": 1024, "parallel": 2, "flash_attn": True}
