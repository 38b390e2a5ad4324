"""`tater serve` and `tater key` as real processes."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import free_port, process_env

ROOT = Path(__file__).resolve().parents[1]
KEY = "tater-" + "ab" * 32




def _tater(*args: str, env: dict[str, str], **kw: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.fixture
def served(tmp_path: Path, tiny_gguf: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    port = free_port()
    proc = _tater("serve", "--port", str(port), "--model", str(tiny_gguf),
                  env=process_env(tmp_path / "cfg", TATER_OPENAI_API_KEY=KEY))
    line = proc.stdout.readline()  # type: ignore[union-attr]
    assert f"serving at http://127.0.0.1:{port}/v1" in line, line + proc.stderr.read()  # type: ignore[union-attr]
    yield proc, f"http://127.0.0.1:{port}/v1"
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_serve_answers_the_sdk_and_stops_cleanly_on_sigterm(served: tuple[subprocess.Popen, str]) -> None:
    proc, url = served
    client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0)
    assert "tater/hydra" in [m.id for m in client.models.list()]
    r = client.chat.completions.create(model="tater/direct", messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=3)
    assert r.usage.completion_tokens == 3

    # a stream in flight when SIGTERM arrives: the process still exits promptly
    got_first = threading.Event()

    def stream() -> None:
        try:
            with httpx.stream("POST", url + "/chat/completions", headers={"X-API-Key": KEY}, timeout=30,
                              json={"messages": [{"role": "user", "content": "go"}], "stream": True}) as s:
                for _ in s.iter_lines():
                    got_first.set()
        except httpx.HTTPError:
            pass

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    assert got_first.wait(10)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert time.monotonic() - started < 12
    t.join(5)
    assert not t.is_alive()


@pytest.mark.parametrize("provider", ["mlx_lm", "hf_transformers"])
def test_serve_with_a_hugging_face_format_model_samples_and_exits_cleanly(
        tmp_path: Path, tiny_hf_folder: Path, provider: str) -> None:
    """Sampled requests differ unless seeded, and the process exits 0 (MLX once crashed at exit)."""
    port = free_port()
    proc = _tater("serve", "--port", str(port), "--provider", provider, "--model", str(tiny_hf_folder),
                  env=process_env(tmp_path / "cfg", TATER_OPENAI_API_KEY=KEY))
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert f"serving at http://127.0.0.1:{port}/v1" in line, line + proc.stderr.read()  # type: ignore[union-attr]
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
        ask = {"model": "tater/direct", "messages": [{"role": "user", "content": "hi"}],
               "max_tokens": 12, "temperature": 1.0}
        unseeded = {client.chat.completions.create(**ask).choices[0].message.content for _ in range(3)}
        assert len(unseeded) > 1, "unseeded requests must not repeat"
        seeded = {client.chat.completions.create(**ask, seed=11).choices[0].message.content
                  for _ in range(2)}
        assert len(seeded) == 1
        streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            **ask, seed=11, stream=True) if c.choices)
        assert {streamed} == seeded
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_reports_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        proc = _tater("serve", "--port", str(port), env=process_env(tmp_path / "cfg"))
        _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert f"Port {port} on 127.0.0.1 is already in use" in err


def test_serve_reports_a_model_that_cannot_load(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 60)  # the signature, then garbage: refused by the loader
    proc = _tater("serve", "--port", str(free_port()), "--model", str(bad), env=process_env(tmp_path / "cfg"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "could not be loaded" in err and "broken.gguf" in err
    text = tmp_path / "notes.gguf"
    text.write_bytes(b"this is not a gguf file")  # no signature: refused before loading, saying why
    proc = _tater("serve", "--port", str(free_port()), "--model", str(text),
                  env=process_env(tmp_path / "cfg"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "not a GGUF model" in err and "notes.gguf" in err
    proc = _tater("serve", "--model", str(tmp_path / "nope.gguf"), env=process_env(tmp_path / "cfg"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "not found" in err and "nope.gguf" in err


def test_key_commands_explain_a_missing_keyring(tmp_path: Path) -> None:
    proc = _tater("key", "rotate", env=process_env(tmp_path / "cfg"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "No OS keyring is available" in err
    proc = _tater("key", "show", env=process_env(tmp_path / "cfg", TATER_OPENAI_API_KEY=KEY))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.strip() == KEY and "environment" in err


def test_headless_server_never_imports_qt() -> None:
    code = ("import sys, app.cli, app.services, app.server.app, app.model_hub; "
            "assert not [m for m in sys.modules if m.startswith('PySide6')], 'Qt imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
