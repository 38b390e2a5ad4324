# ruff: noqa: F811 - pytest fixtures are imported by name
"""First run: the API goes on with no model at all; the tray says so and opens the Get models
window with recommended small models; one click downloads one (stand-in Hub), the row is
saved and active, and the server answers a chat with it.  A gated repository shows the token
field; a token saved there goes to the keyring and the download is retried with it."""

from __future__ import annotations

from pathlib import Path

from app.hub_downloads import TOKEN_ENTRY, set_token
from app.keystore import SecretStore
from app.recommended_models import RECOMMENDED
from tests.hub_standin import GATED_REPO, GATED_TOKEN, HubStandIn, Repo, hub  # noqa: F401
from tests.ui.conftest import chat


def test_no_model_opens_recommended_models_and_one_click_makes_it_answer(
        shell, qtbot, hub: HubStandIn, tiny_gguf: Path) -> None:  # type: ignore[no-untyped-def]
    first = RECOMMENDED[0]  # the stand-in serves the tiny model under the real name
    hub.repos[first.repo_id] = Repo(first.repo_id, {first.filename: tiny_gguf.read_bytes()},
                                    tags=["gguf", "text-generation"])
    assert shell.get_models_dialog is None
    shell.controller.set_api_enabled(True)

    notice = shell.controller.notifier.history[-1]
    assert notice.title == "No model yet" and "recommended" in notice.message
    assert shell.tray.state.text == "API on, no model"
    dialog = shell.get_models_dialog
    assert dialog is not None and dialog.isVisible()
    table = dialog.recommended
    assert table.rowCount() == len(RECOMMENDED) >= 3
    for row, model in enumerate(RECOMMENDED):
        assert table.item(row, 0).text() == model.name
        assert table.item(row, 1).text().startswith("about ") and "B" in table.item(row, 1).text()
        assert table.item(row, 2).text() == model.good_at

    values: list[int] = []
    dialog.bar.valueChanged.connect(values.append)
    dialog.recommended_buttons[0].click()
    store = shell.services.settings
    qtbot.waitUntil(lambda: bool(store.saved.models), timeout=30_000)
    (row,) = store.saved.models
    assert store.saved.active_model == row.id and Path(row.source).name == first.filename
    assert values and values[-1] == 1000 and "added to the models." in dialog.hub_status.text()
    assert shell.controller.notifier.history[-1].title == "Model added"

    key, url = shell.services.keys.get(), shell.services.server.base_url
    reply = chat(url, key)
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["completion_tokens"] == 4
    qtbot.waitUntil(lambda: shell.tray.state.text == "API on", timeout=10_000)


def test_a_model_row_already_there_opens_nothing(shell, qtbot, tiny_gguf: Path) -> None:  # type: ignore[no-untyped-def]
    shell.controller.add_model_path(str(tiny_gguf))
    shell.controller.set_api_enabled(True)
    assert shell.get_models_dialog is None
    assert all(n.title != "No model yet" for n in shell.controller.notifier.history)


def test_gated_repository_shows_the_token_field_and_retries_with_the_token(
        qtbot, hub: HubStandIn) -> None:  # type: ignore[no-untyped-def]
    from app.ui.pages.get_models_dialog import GetModelsDialog

    added: list[object] = []
    dialog = GetModelsDialog(added.append)
    qtbot.addWidget(dialog)
    dialog.show()
    assert not dialog.token_box.isVisible()
    dialog.query.setText("gated")
    dialog.search_button.click()
    qtbot.waitUntil(lambda: dialog.results.count() == 1, timeout=10_000)
    assert "gated (needs a token)" in dialog.results.item(0).text()
    dialog.results.setCurrentRow(0)
    qtbot.waitUntil(lambda: dialog.choices.count() == 1, timeout=10_000)
    dialog.download_button.click()  # no token: the Hub answers 401 GatedRepo
    qtbot.waitUntil(dialog.token_box.isVisible, timeout=10_000)
    assert "gated repository" in dialog.hub_status.text() and GATED_REPO in dialog.hub_status.text()
    assert not added

    set_token("hf_an_account_without_access")  # the Hub answers 403: says to accept the terms
    dialog.download_button.click()
    qtbot.waitUntil(lambda: "has no access" in dialog.hub_status.text(), timeout=10_000)

    dialog.token_edit.setText(GATED_TOKEN)
    dialog.save_token_button.click()  # saved in the keyring, then the download is retried
    assert SecretStore().get(TOKEN_ENTRY) == GATED_TOKEN and dialog.token_edit.text() == ""
    qtbot.waitUntil(lambda: bool(added), timeout=20_000)
    assert hub.seen[-1].authorization == f"Bearer {GATED_TOKEN}"
    assert "Downloaded gated-Q4_0.gguf" in dialog.hub_status.text()


def test_the_model_menu_opens_get_models(shell) -> None:  # type: ignore[no-untyped-def]
    shell.menu.refresh()
    (get,) = [a for a in shell.menu.model_menu.actions() if a.text() == "Get models…"]
    get.trigger()
    assert shell.get_models_dialog is not None and shell.get_models_dialog.isVisible()


def test_starting_with_the_api_on_and_no_model_offers_models(qtbot, services) -> None:  # type: ignore[no-untyped-def]
    import socket

    from app.ui.shell import TrayApp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    services.settings.update(api_enabled=True, port=port, host="127.0.0.1")
    app = TrayApp(services)
    try:
        app.start()
        assert app.get_models_dialog is not None and app.get_models_dialog.isVisible()
        assert app.controller.notifier.history[-1].title == "No model yet"
    finally:
        app.tray.hide()
        app.controller.bridge.detach()
        if app.get_models_dialog is not None:
            app.get_models_dialog.close()
