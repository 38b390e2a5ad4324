"""DEVELOPERS.md's module table matches ``app/``: every module has a row, every row a module."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| `(app/[^`]+\.py)` \|(.+)\|\s*$")


def table_rows() -> dict[str, str]:
    """The module rows of DEVELOPERS.md's "Modules" table: path -> its description."""
    text = (ROOT / "DEVELOPERS.md").read_text(encoding="utf-8")
    section = text.split("### Modules", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} has two rows in DEVELOPERS.md"
            rows[match.group(1)] = match.group(2).strip()
    return rows


def app_modules() -> set[str]:
    """Every module under app/, package ``__init__.py`` files aside."""
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / "app").rglob("*.py")
            if p.name != "__init__.py"}


def test_every_module_has_a_row() -> None:
    missing = sorted(app_modules() - set(table_rows()))
    assert not missing, f"add these modules to DEVELOPERS.md's Modules table: {missing}"


def test_every_row_names_a_module() -> None:
    stale = sorted(set(table_rows()) - app_modules())
    assert not stale, f"DEVELOPERS.md's Modules table names modules that are gone: {stale}"


def test_every_row_says_what_the_module_holds() -> None:
    empty = sorted(path for path, what in table_rows().items() if len(what) < 8)
    assert not empty, f"rows without a description in DEVELOPERS.md: {empty}"


def test_every_package_is_in_the_layout_table() -> None:
    text = (ROOT / "DEVELOPERS.md").read_text(encoding="utf-8")
    layout = text.split("## Layout", 1)[1].split("### Modules", 1)[0]
    packages = {p.parent.relative_to(ROOT).as_posix() + "/" for p in (ROOT / "app").rglob("__init__.py")}
    missing = sorted(pkg for pkg in packages if f"`{pkg}`" not in layout)
    assert not missing, f"add these packages to DEVELOPERS.md's Layout table: {missing}"
