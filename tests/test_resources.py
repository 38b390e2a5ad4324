"""Icons, desktop entry and bundle info: present, well-formed, and found from source and bundle."""

from __future__ import annotations

import configparser
import json
import struct
import sys
from pathlib import Path

import pytest

from app import bundle_info
from app.resources import (
    APP_ICON_SIZES,
    TRAY_SIZES,
    TRAY_STATES,
    app_icon_path,
    resource_path,
    resources_dir,
    tray_icon_path,
)

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("state", TRAY_STATES)
@pytest.mark.parametrize("size", TRAY_SIZES)
def test_tray_pngs_exist_at_their_size(state: str, size: int) -> None:
    path = tray_icon_path(state, size)
    assert path.name == f"tray-{state}-{size}.png"
    assert _png_size(path.read_bytes()) == (size, size)


def test_tray_size_choice_and_errors() -> None:
    assert tray_icon_path("idle", 20).name == "tray-idle-22.png"  # next size up
    assert tray_icon_path("idle", 500).name == "tray-idle-64.png"  # largest available
    assert tray_icon_path("error").name == "tray-error-64.png"
    assert app_icon_path(100).name == "tater-desktop-128.png"
    with pytest.raises(ValueError, match="unknown tray state"):
        tray_icon_path("sleeping")
    with pytest.raises(ValueError, match="positive"):
        tray_icon_path("idle", 0)


def test_states_look_different() -> None:
    """Every state has its own pixels at the smallest size (the badge colour/shape shows)."""
    blobs = {tray_icon_path(s, 16).read_bytes() for s in TRAY_STATES}
    assert len(blobs) == len(TRAY_STATES)


def test_icons_load_in_qt(qapp) -> None:
    from PySide6.QtGui import QImage

    for state in TRAY_STATES:
        img = QImage(str(tray_icon_path(state, 22)))
        assert not img.isNull() and img.hasAlphaChannel()
        assert img.pixelColor(0, 0).alpha() == 0  # transparent corner: works on any panel colour
        assert img.pixelColor(11, 11).alpha() == 255  # opaque body
    for size in APP_ICON_SIZES:
        assert QImage(str(app_icon_path(size))).width() == size


def test_resource_path_rejects_escapes_and_missing() -> None:
    with pytest.raises(ValueError):
        resource_path("../pyproject.toml")
    with pytest.raises(ValueError):
        resource_path(str(ROOT / "resources" / "tater.ico"))
    with pytest.raises(FileNotFoundError, match="missing resource"):
        resource_path("icons/nope.png")


def test_resource_path_inside_a_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    icon = tmp_path / "resources" / "icons" / "tray" / "tray-idle-22.png"
    icon.parent.mkdir(parents=True)
    icon.write_bytes(PNG_MAGIC)
    (tmp_path / "bundle_runtimes.json").write_text(json.dumps({"runtimes": ["llama_cpp"]}))
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert resources_dir() == tmp_path / "resources"
    assert tray_icon_path("idle", 22) == icon
    assert bundle_info.bundled_runtimes() == ["llama_cpp"]
    (tmp_path / "bundle_runtimes.json").write_text("{not json")
    assert bundle_info.bundled_runtimes() is None


def test_bundled_runtimes_is_none_from_source() -> None:
    assert not bundle_info.is_frozen()
    assert bundle_info.bundled_runtimes() is None


def test_ico_directory_matches_png_entries() -> None:
    data = resource_path("tater.ico").read_bytes()
    reserved, kind, count = struct.unpack("<HHH", data[:6])
    assert (reserved, kind) == (0, 1) and count >= 6
    sizes = []
    for i in range(count):
        w, h, _, _, planes, bpp, length, offset = struct.unpack("<BBBBHHII", data[6 + 16 * i : 22 + 16 * i])
        w = w or 256
        assert (w, planes, bpp) == (h or 256, 1, 32)
        assert _png_size(data[offset : offset + length]) == (w, w)
        sizes.append(w)
    assert {16, 32, 48, 256} <= set(sizes)


def test_icns_entries_are_pngs_of_the_right_size() -> None:
    data = resource_path("tater.icns").read_bytes()
    assert data[:4] == b"icns" and struct.unpack(">I", data[4:8])[0] == len(data)
    expected = {b"icp4": 16, b"icp5": 32, b"ic07": 128, b"ic08": 256, b"ic09": 512, b"ic10": 1024}
    seen: dict[bytes, int] = {}
    pos = 8
    while pos < len(data):
        ostype, length = data[pos : pos + 4], struct.unpack(">I", data[pos + 4 : pos + 8])[0]
        seen[ostype] = _png_size(data[pos + 8 : pos + length])[0]
        pos += length
    assert pos == len(data)
    assert {k: seen.get(k) for k in expected} == expected


def test_desktop_entry() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(resource_path("tater-desktop.desktop"), encoding="utf-8")
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application"
    assert entry["Exec"] == "tater" and entry["Icon"] == "tater-desktop"
    assert entry["StartupNotify"] == "false"
    assert entry["Categories"].endswith(";")


def test_macos_plist_values() -> None:
    plist = json.loads(resource_path("macos/Info.plist.json").read_text())
    assert plist["LSUIElement"] is True
    assert plist["CFBundleIdentifier"] == "io.tater.desktop"


def test_make_icons_regenerates_everything(tmp_path: Path, qapp) -> None:
    """The generator script reproduces the committed set (same files, same pixel sizes)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import make_icons
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    written = make_icons.make_icons(tmp_path)
    rel = {p.relative_to(tmp_path) for p in written}
    committed = {
        p.relative_to(resources_dir())
        for p in resources_dir().rglob("*")
        if p.suffix in {".png", ".ico", ".icns"} and "src" not in p.parts
    }
    assert rel == committed
    for path in written:
        if path.suffix == ".png":
            size = int(path.stem.rsplit("-", 1)[1])
            assert _png_size(path.read_bytes()) == (size, size)
