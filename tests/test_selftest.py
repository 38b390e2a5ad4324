"""`tater --selftest` runs the real server and the real llama.cpp runtime on a tiny model."""

from __future__ import annotations

from pathlib import Path

from app.selftest import run_selftest


def test_selftest_passes_on_a_generated_tiny_model(memory_keyring) -> None:
    lines: list[str] = []
    assert run_selftest(out=lines.append) == 0, lines
    assert any(line.startswith("PASS chat: llama_cpp:") for line in lines)
    assert lines[-1] == "selftest: 3 passed, 0 failed"
    assert memory_keyring.store == {}, "the selftest must not touch the user's keyring"


def test_selftest_fails_loudly_on_a_bad_model(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 60)  # the signature, then garbage: the loader refuses it
    lines: list[str] = []
    assert run_selftest(str(bad), out=lines.append) == 1
    assert any(line.startswith("FAIL chat") and "bad.gguf" in line for line in lines), lines
