"""The Linux bundle built from build.spec: runs, holds what the app needs, leaves out the rest."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from app import __version__

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def test_version_runs_frozen(bundle_dir: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run(
        [str(bundle_dir / "tater"), "--version"], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"tater {__version__}"


def test_bundle_records_its_runtimes(bundle_dir: Path) -> None:
    info = json.loads((bundle_dir / "_internal" / "bundle_runtimes.json").read_text())
    assert info["tater_version"] == __version__
    selected = [r for r in os.environ.get("TATER_BUNDLE_RUNTIMES", "llama_cpp").split(",") if r]
    if "llama_cpp" in selected and importlib.util.find_spec("llama_cpp"):
        assert "llama_cpp" in info["runtimes"]
        libs = {p.name for p in (bundle_dir / "_internal" / "llama_cpp" / "lib").iterdir()}
        assert {"libllama.so", "libggml.so", "libggml-base.so.0", "libggml-cpu.so.0"} <= libs
        assert not any(n.count(".") > 3 for n in libs), f"duplicate versioned copies: {sorted(libs)}"
        assert {"llama_cpp.llama", "gguf.gguf_writer", "diskcache"} <= _frozen_modules(bundle_dir)
    # Runtimes not selected stay out even when installed in the build environment.
    absent = {
        "mlx_lm": {"mlx", "mlx_lm"},
        "hf_transformers": {"torch", "transformers"},
        "llama_cpp": {"llama_cpp"},
    }
    top_level = {m.split(".")[0] for m in _frozen_modules(bundle_dir)}
    top_level |= {p.name for p in (bundle_dir / "_internal").iterdir()}
    for runtime, packages in absent.items():
        if runtime not in info["runtimes"]:
            assert not packages & top_level, f"{runtime} not selected but {packages & top_level} bundled"


def _frozen_modules(bundle_dir: Path) -> set[str]:
    """Names of the Python modules in the bundle's PYZ archive."""
    readers = importlib.import_module("PyInstaller.archive.readers")
    return set(readers.CArchiveReader(str(bundle_dir / "tater")).open_embedded_archive("PYZ.pyz").toc)


def test_dynamically_imported_modules_are_frozen(bundle_dir: Path) -> None:
    """Modules only reached through importlib/entry points are in the archive."""
    frozen = _frozen_modules(bundle_dir)
    needed = {
        "app.cli", "app.providers.llama_cpp", "app.providers.remote", "app.server.app", "app.ui.tray",
        "app.logging_setup", "app.bundle_info", "app.resources", "quart_schema", "hypercorn.asyncio",
        "hypercorn.protocol.h11", "hypercorn.protocol.h2", "keyring.backends.SecretService",
        "keyring.backends.chainer", "secretstorage", "platformdirs.unix",
    }  # fmt: skip
    assert not needed - frozen, sorted(needed - frozen)
    assert not {m for m in frozen if m.split(".")[0] in {"tkinter", "pytest", "_pytest", "PIL", "setuptools"}}
    pyside = bundle_dir / "_internal" / "PySide6"
    for mod in ("QtCore", "QtGui", "QtWidgets", "QtSvg", "QtDBus"):
        assert (pyside / f"{mod}.abi3.so").is_file(), mod


def test_resources_and_desktop_integration(bundle_dir: Path) -> None:
    res = bundle_dir / "_internal" / "resources"
    for state in ("off", "idle", "generating", "loading", "error"):
        assert (res / "icons" / "tray" / f"tray-{state}-22.png").is_file()
    assert (res / "icons" / "app" / "tater-desktop-256.png").is_file()
    assert (bundle_dir / "share" / "applications" / "tater-desktop.desktop").is_file()
    for size in (16, 32, 48, 256, 512):
        assert (
            bundle_dir / "share" / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "tater-desktop.png"
        ).is_file()


def test_unused_qt_and_stdlib_left_out(bundle_dir: Path) -> None:
    internal = bundle_dir / "_internal"
    names = [p.relative_to(internal).as_posix() for p in internal.rglob("*")]
    forbidden = (
        "libQt6Qml", "libQt6Quick", "libQt6Designer", "libQt6Pdf", "QtQml.abi3", "tkinter", "_pytest",
        "platformthemes/libqgtk3", "libgtk-3", "libcairo", "PIL/", "Qt/qml/", "translations/",
    )  # fmt: skip
    leaked = [n for n in names if any(f in n for f in forbidden)]
    assert not leaked, leaked
    assert (internal / "PySide6" / "Qt" / "plugins" / "platforms" / "libqxcb.so").is_file()
    assert (internal / "PySide6" / "Qt" / "plugins" / "platforms" / "libqoffscreen.so").is_file()


def test_every_shared_library_resolves(bundle_dir: Path) -> None:
    """ldd finds every dependency of every bundled ELF file (as the bootloader sets it up)."""
    internal = bundle_dir / "_internal"
    env = {**os.environ, "LD_LIBRARY_PATH": str(internal)}
    missing: dict[str, list[str]] = {}
    for path in [bundle_dir / "tater", *internal.rglob("*.so*")]:
        if path.is_symlink() or path.read_bytes()[:4] != b"\x7fELF":
            continue
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=env).stdout
        lost = [line.split()[0] for line in out.splitlines() if "not found" in line]
        if lost:
            missing[str(path.relative_to(bundle_dir))] = lost
    assert not missing, missing


def test_selftest_runs_frozen(bundle_dir: Path, tmp_path: Path) -> None:
    """``tater --selftest`` passes inside the bundle; with llama.cpp bundled its chat ran on it."""
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "HOME": str(tmp_path),
        "TATER_CONFIG_DIR": str(tmp_path / "config"),
        "TATER_LOG_DIR": str(tmp_path / "logs"),
    }
    proc = subprocess.run(
        [str(bundle_dir / "tater"), "--selftest"], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = json.loads((bundle_dir / "_internal" / "bundle_runtimes.json").read_text())
    if "llama_cpp" in info["runtimes"]:
        assert "PASS chat: llama_cpp" in proc.stdout
    logs = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "logs").glob("*.log*"))
    assert "tater.access" in logs or "GET /v1/models" in logs
    assert not re.search(r"tater-[0-9a-f]{64}", logs)
