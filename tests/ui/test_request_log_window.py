"""The request log window fills from the server thread and copies a row as curl without the key."""

from __future__ import annotations

from PySide6.QtGui import QGuiApplication

from tests.ui.conftest import chat, get_models


def test_request_shows_up_as_row(shell, qtbot, tiny_gguf) -> None:
    from app.providers.llama_cpp import LlamaCppProvider

    row = LlamaCppProvider.row_for(str(tiny_gguf))
    shell.services.settings.update(models=[row], active_model=row.id)
    shell.controller.set_api_enabled(True)
    key, url = shell.services.keys.get(), shell.services.server.base_url
    get_models(url, key)  # logged before the window exists: shown from history
    shell.open_request_log()
    window = shell.request_log_window
    qtbot.addWidget(window)
    assert window.model.rowCount() == 1
    assert chat(url, key).status_code == 200
    qtbot.waitUntil(lambda: window.model.rowCount() == 2, timeout=3000)
    cells = [window.model.index(0, c).data() for c in range(window.model.columnCount())]
    _time, app, endpoint, model, mode, status, tok_in, tok_out, ttft, tps, latency, error = cells
    assert app == "httpx" and endpoint == "POST /v1/chat/completions"
    assert (model, mode, status, error) == (row.id, "direct", "200", "")
    assert int(tok_in) > 0 and int(tok_out) == 4
    assert ttft.endswith(("ms", "s"))  # the runtime's loop noted the first token
    assert float(tps) > 0 and latency.endswith(("ms", "s"))
    assert "2 served" in window.summary.text()

    window.table.selectRow(0)
    assert window.copy_selected_as_curl()
    curl = QGuiApplication.clipboard().text()
    assert curl.startswith("curl ") and "/v1/chat/completions" in curl
    assert "$TATER_API_KEY" in curl and key not in curl
    assert '"content": "hi"' in curl or '"content":"hi"' in curl


def test_curl_redacts_key_anywhere(shell) -> None:
    import time

    from app.server.request_log import RequestRecord

    shell.controller.set_api_enabled(True)
    key = shell.services.keys.get()
    record = RequestRecord(started=time.time(), client="127.0.0.1", method="POST",
                           path="/v1/chat/completions", status=401, body=f'{{"note": "{key}"}}')
    shell.open_request_log()
    text = shell.request_log_window.curl_for(record)
    assert key not in text and "[REDACTED]" in text
    shell.request_log_window.close()
