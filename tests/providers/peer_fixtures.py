"""A real OpenAI-compatible peer this project did not write: ``python -m llama_cpp.server``.

Started on a free loopback port with the tiny GGUF (from the root conftest) and an API key;
stopped (terminate, then kill) after the module.  Also: sockets that refuse or never answer.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

PEER_KEY = "peer-secret-key-0123456789"
PEER_MODEL = "tiny"


@dataclass
class Peer:
    """A running llama_cpp.server."""

    port: int
    base_url: str
    key: str
    model: str
    startup_seconds: float



@contextmanager
def running_peer(cmd: list[str], base_url: str, log_path: Path,
                 headers: dict[str, str] | None = None) -> Iterator[float]:
    """Start ``cmd``; once ``base_url/models`` answers 200 yield the start-up seconds; stop it after."""
    import llama_cpp.server.app  # noqa: F401 - the [server] extra must be installed (never a skip)

    t0 = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}; "
                                       f"see {log_path}")
                try:
                    if httpx.get(f"{base_url}/models", headers=headers or {}, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() - t0 > 60:
                    raise RuntimeError(f"llama_cpp.server did not start in 60 s; see {log_path}")
                time.sleep(0.1)
            yield time.monotonic() - t0
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def run_peer(gguf: Path, log_path: Path, api_key: str | None) -> Iterator[Peer]:
    """``python -m llama_cpp.server --model tiny.gguf [--api_key ...]`` on a free port."""
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
           "--model_alias", PEER_MODEL, "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", "512"]
    if api_key:
        cmd += ["--api_key", api_key]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    base_url = f"http://127.0.0.1:{port}/v1"
    with running_peer(cmd, base_url, log_path, headers) as startup:
        yield Peer(port, base_url, api_key or "", PEER_MODEL, startup)


@pytest.fixture(scope="module")
def llama_peer(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    """A peer that requires ``PEER_KEY``."""
    with run_peer(tiny_gguf, tmp_path_factory.mktemp("peer") / "server.log", PEER_KEY) as peer:
        yield peer


@pytest.fixture(scope="module")
def open_llama_peer(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    """A peer without an API key."""
    with run_peer(tiny_gguf, tmp_path_factory.mktemp("peer") / "server.log", None) as peer:
        yield peer


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port that is bound but not listening: connections are refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    yield int(s.getsockname()[1])
    s.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (kernel backlog) and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield int(s.getsockname()[1])
    s.close()
