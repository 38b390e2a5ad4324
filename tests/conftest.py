"""Shared fixtures: an in-memory keyring, an isolated config dir, tiny models, a real server."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import keyring
import keyring.backend
import keyring.errors
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A dict-backed keyring for tests (never the user's real one)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if (service, username) not in self.store:
            raise keyring.errors.PasswordDeleteError("not found")
        del self.store[(service, username)]


@pytest.fixture(autouse=True)
def memory_keyring() -> Iterator[MemoryKeyring]:
    """Every test gets a fresh in-memory keyring; the previous backend is restored after."""
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No TATER_* variable leaks in from the developer's shell; config and logs go to tmp."""
    for var in list(os.environ):
        if var.startswith("TATER_"):
            monkeypatch.delenv(var)
    cfg = tmp_path / "config"
    monkeypatch.setenv("TATER_CONFIG_DIR", str(cfg))
    monkeypatch.setenv("TATER_LOG_DIR", str(tmp_path / "logs"))
    return cfg


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Register the scripted providers of tests/fakes.py (undone afterwards); a fresh Script."""
    from app import providers
    from tests import fakes

    for name, path in fakes.PROVIDER_PATHS.items():
        monkeypatch.setitem(providers.PROVIDER_PATHS, name, path)
    fakes.SCRIPT.reset()
    yield fakes.SCRIPT


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight "clean" GGUF (no byte/special tokens can be sampled)."""
    from app.tinymodels.gguf_model import write_tiny_gguf

    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-chat.gguf")


@pytest.fixture(scope="session")
def tiny_hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama in Hugging Face format (Transformers and mlx-lm both load it)."""
    from app.tinymodels.hf_model import write_tiny_hf_llama

    return write_tiny_hf_llama(tmp_path_factory.mktemp("hf") / "tiny-llama", seed=0)


@pytest.fixture(scope="session")
def tiny_hf_eos_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny Llama, except that EOS is always the next token."""
    from app.tinymodels.hf_model import write_tiny_hf_llama

    return write_tiny_hf_llama(tmp_path_factory.mktemp("hf") / "tiny-llama-eos", force_eos=True)


@dataclass
class LiveServer:
    """A real Tater server on a free loopback port."""

    services: object
    base_url: str  # .../v1
    key: str

    @property
    def root(self) -> str:
        return self.base_url[: -len("/v1")]

    @property
    def settings(self):
        return self.services.settings  # type: ignore[attr-defined]

    def client(self, **kw: object):
        import openai

        return openai.OpenAI(
            base_url=self.base_url,
            api_key=kw.pop("api_key", self.key),
            max_retries=0,
            timeout=kw.pop("timeout", 60),
            **kw,
        )


def start_live_server(config_dir: Path, rows: list, active: str | None, **settings: object) -> LiveServer:
    """Build services on ``config_dir`` with the given rows, enable the API, set a key, start."""
    from app.services import build_services

    services = build_services(config_dir, env={})
    services.settings.update(models=rows, active_model=active, api_enabled=True, **settings)
    key = services.keys.rotate()
    services.start_server(host="127.0.0.1", port=0)
    return LiveServer(services, services.server.base_url, key)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_env(config: Path, **extra: str) -> dict[str, str]:
    """For a ``python -m app`` subprocess: this environment without TATER_* settings, with its
    own config dir and no keyring."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TATER_")}
    env.update(TATER_CONFIG_DIR=str(config), TATER_LOG_DIR=str(config.parent / "logs"),
               PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring", PYTHONUNBUFFERED="1", **extra)
    return env


@contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded HTTP server for ``handler`` on a free local port; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def llama_server(clean_env: Path, tiny_gguf: Path) -> Iterator[LiveServer]:
    """The real server with the tiny GGUF as the active llama.cpp model."""
    from app.providers.llama_cpp import LlamaCppProvider

    row = LlamaCppProvider.row_for(str(tiny_gguf))
    live = start_live_server(clean_env, [row], row.id)
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]


# -- no silent skips -----------------------------------------------------------------------
# A missing runtime (llama.cpp, MLX, Transformers, PySide6, PyInstaller, Xvfb…) must fail the suite,
# not quietly skip the tests that prove it works.  Only tests that cannot apply to this OS may skip,
# with a reason starting with PLATFORM_SKIP.

PLATFORM_SKIP = "not on this platform:"


def _allowed(longrepr: object) -> bool:
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return PLATFORM_SKIP in str(text)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and not hasattr(rep, "wasxfail") and not _allowed(rep.longrepr):
        rep.outcome = "failed"
        rep.longrepr = f"skipped, which this suite does not allow: {rep.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and not _allowed(rep.longrepr):
        rep.outcome = "failed"
        rep.longrepr = f"module skipped, which this suite does not allow: {rep.longrepr}"
