"""The log file never contains an API key, whatever shape it was logged in."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypercorn.config import Config
from hypercorn.logging import Logger as HypercornLogger

from app import logging_setup
from app.logging_setup import REDACTED, default_log_dir, redact, register_secret, setup_logging

KEY = "tater-" + secrets.token_hex(32)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Leave the logging tree as we found it (root handlers, levels, filters, hypercorn loggers)."""
    names = ("", "hypercorn.access", "hypercorn.error", "app.test")
    saved = {}
    for name in names:
        lg = logging.getLogger(name)
        saved[name] = (list(lg.handlers), list(lg.filters), lg.level, lg.propagate)
    yield
    for name, (handlers, filters, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        for h in lg.handlers:
            if h not in handlers:
                h.close()
        lg.handlers[:] = handlers
        lg.filters[:] = filters
        lg.setLevel(level)
        lg.propagate = propagate
    logging.captureWarnings(False)


def _flush() -> None:
    for h in logging.getLogger().handlers:
        h.flush()


def _http_scope(query: str, headers: list[tuple[bytes, bytes]]) -> dict:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/models",
        "query_string": query.encode(),
        "headers": headers,
        "client": ("127.0.0.1", 50000),
    }


def test_key_in_every_form_is_redacted_from_the_file(tmp_path: Path) -> None:
    log_file = setup_logging("DEBUG", log_dir=tmp_path, console=False)
    log = logging.getLogger("app.test")
    log.info("plain message with %s inside", "arg")  # control: ordinary text survives
    log.info(f"message holds {KEY}")
    log.info("args hold %s and %r", KEY, {"key": KEY})
    log.warning("dict args %(k)s", {"k": KEY})
    try:
        raise ValueError(f"bad key {KEY}")
    except ValueError:
        log.exception("failed")
    log.info('127.0.0.1 - - "GET /v1/models?api_key=%s&x=1 HTTP/1.1" 200', KEY)
    log.info("headers: Authorization: Bearer %s, X-API-Key: %s", KEY, KEY)
    log.info("headers %s", [(b"authorization", f"Bearer {KEY}".encode()), (b"x-api-key", KEY.encode())])
    log.info("body %s", json.dumps({"api_key": KEY}))
    log.debug("stack", stack_info=True, extra={"note": KEY})
    _flush()

    text = log_file.read_text(encoding="utf-8")
    assert KEY not in text
    assert KEY[6:] not in text and KEY[6:38] not in text  # no partial leak of the hex part
    assert "plain message with arg inside" in text
    assert "ValueError: bad key tater-" + REDACTED in text
    assert "api_key=" + REDACTED + "&x=1" in text
    assert "Authorization: " + REDACTED in text
    assert "X-API-Key: " + REDACTED in text
    assert text.count(REDACTED) >= 10


async def test_hypercorn_access_log_via_our_handlers(tmp_path: Path) -> None:
    log_file = setup_logging("INFO", log_dir=tmp_path, console=False)
    config = Config()
    config.accesslog = logging.getLogger("hypercorn.access")
    config.access_log_format = '%(h)s "%(R)s" %(s)s auth=%({authorization}i)s xkey=%({x-api-key}i)s q=%(q)s'
    hlog = HypercornLogger(config)
    scope = _http_scope(
        f"api_key={KEY}&stream=true",
        [(b"authorization", f"Bearer {KEY}".encode()), (b"x-api-key", KEY.encode())],
    )
    await hlog.access(scope, {"status": 200, "headers": []}, 0.01)
    await hlog.error("client sent %s", KEY)
    _flush()
    text = log_file.read_text(encoding="utf-8")
    assert "GET /v1/models?api_key=" + REDACTED + "&stream=true 1.1" in text
    assert "client sent tater-" + REDACTED in text
    assert KEY not in text


async def test_hypercorn_own_stream_handler_is_redacted(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Handed "-", Hypercorn swaps in its own stdout handler; the logger-level filter still applies."""
    setup_logging("INFO", log_dir=tmp_path, console=False)
    config = Config()
    config.accesslog = "-"
    hlog = HypercornLogger(config)
    await hlog.access(_http_scope(f"api_key={KEY}", []), {"status": 401, "headers": []}, 0.0)
    out = capsys.readouterr().out
    assert "401" in out
    assert KEY not in out
    # "r" (without query) is the default format; log the query too to be sure
    config.access_log_format = "%(R)s"
    hlog = HypercornLogger(config)
    await hlog.access(_http_scope(f"api_key={KEY}", []), {"status": 200, "headers": []}, 0.0)
    out = capsys.readouterr().out
    assert "api_key=" + REDACTED in out and KEY not in out


def test_rotation_keeps_backups_and_redacts_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging_setup, "MAX_BYTES", 4000)
    log_file = setup_logging("INFO", log_dir=tmp_path, console=False)
    for i in range(400):
        logging.getLogger("app.test").info("request %d key=%s", i, KEY)
    _flush()
    files = sorted(tmp_path.glob(log_file.name + "*"))
    assert len(files) == 1 + logging_setup.BACKUP_COUNT
    assert all(f.stat().st_size <= 4000 for f in files)
    assert not any(KEY in f.read_text(encoding="utf-8") for f in files)


def test_setup_twice_replaces_handlers(tmp_path: Path) -> None:
    setup_logging("INFO", log_dir=tmp_path / "a", console=True)
    before = len(logging.getLogger().handlers)
    path = setup_logging("WARNING", log_dir=tmp_path / "b", console=True)
    assert len(logging.getLogger().handlers) == before
    assert path == tmp_path / "b" / "tater-desktop.log" and path.exists()
    assert logging.getLogger().level == logging.WARNING


def test_log_dir_env_override_and_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TATER_LOG_DIR", str(tmp_path / "logs"))
    assert default_log_dir() == tmp_path / "logs"
    assert setup_logging(console=False).parent == tmp_path / "logs"
    monkeypatch.delenv("TATER_LOG_DIR")
    assert "tater-desktop" in default_log_dir().parts


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (f"GET /v1/chat?api_key={KEY} HTTP/1.1", f"GET /v1/chat?api_key={REDACTED} HTTP/1.1"),
        ("GET /x?a=1&api-key=short-secret#frag", f"GET /x?a=1&api-key={REDACTED}#frag"),
        ("Authorization: Basic dXNlcjpwYXNz", f"Authorization: {REDACTED}"),
        ("{'authorization': 'Bearer abc.def'}", f"{{'authorization': '{REDACTED}'}}"),
        ("x-api-key=whatever123", f"x-api-key={REDACTED}"),
        ("remote key sk-proj-ABCDEFGHIJKLMNOPqrstu", f"remote key sk-{REDACTED}"),
        ("tater-desktop started on 127.0.0.1:8080", "tater-desktop started on 127.0.0.1:8080"),
    ],
)
def test_redact_shapes(raw: str, expected: str) -> None:
    assert redact(raw) == expected
    assert redact(expected) == expected  # idempotent: filter + formatter may both run


def test_registered_literal_secret(tmp_path: Path) -> None:
    secret = "remote-" + secrets.token_urlsafe(12)
    register_secret(secret)
    log_file = setup_logging("INFO", log_dir=tmp_path, console=False)
    logging.getLogger("app.test").info("calling upstream with %s", secret)
    _flush()
    text = log_file.read_text(encoding="utf-8")
    assert secret not in text and "calling upstream with " + REDACTED in text


def test_real_hypercorn_request_is_logged_redacted(tmp_path: Path) -> None:
    """A real HTTP request through Quart + Hypercorn: the access line is in the file, the key is not."""
    import asyncio
    import socket
    import threading

    import httpx
    from hypercorn.asyncio import serve
    from quart import Quart

    log_file = setup_logging("INFO", log_dir=tmp_path, console=False)
    app = Quart(__name__)

    @app.get("/v1/models")
    async def models() -> dict:
        logging.getLogger("app.test").info("auth header was %s", "Bearer " + KEY)
        return {"object": "list", "data": []}

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = logging.getLogger("hypercorn.access")
    config.errorlog = logging.getLogger("hypercorn.error")
    config.access_log_format = '%(h)s "%(R)s" %(s)s auth=%({authorization}i)s'
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(
        target=lambda: loop.run_until_complete(serve(app, config, shutdown_trigger=stop.wait)), daemon=True
    )
    thread.start()
    try:
        resp = httpx.get(
            f"http://127.0.0.1:{port}/v1/models",
            params={"api_key": KEY},
            headers={"Authorization": f"Bearer {KEY}", "X-API-Key": KEY},
            timeout=10,
        )
        assert resp.status_code == 200
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
    _flush()
    text = log_file.read_text(encoding="utf-8")
    assert '"GET /v1/models?api_key=' + REDACTED + ' 1.1" 200 auth=Bearer ' + REDACTED + "\n" in text
    assert "auth header was Bearer " + REDACTED + "\n" in text
    assert KEY not in text
