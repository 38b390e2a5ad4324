"""What a PyInstaller bundle contains, as recorded by build.spec at build time."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

BUNDLE_INFO_FILE = "bundle_runtimes.json"


def is_frozen() -> bool:
    """True when running from a PyInstaller bundle."""
    return bool(getattr(sys, "frozen", False)) and hasattr(sys, "_MEIPASS")


def bundle_info_path() -> Path | None:
    """Path of ``bundle_runtimes.json`` inside the bundle, or None outside a bundle."""
    if not is_frozen():
        return None
    return Path(sys._MEIPASS) / BUNDLE_INFO_FILE  # type: ignore[attr-defined]


def bundled_runtimes() -> list[str] | None:
    """Provider names of the runtimes collected into this bundle (e.g. ``["llama_cpp"]``).

    None when not running from a bundle (every installed runtime may be used then) or when the
    bundle carries no readable record.
    """
    path = bundle_info_path()
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    runtimes = data.get("runtimes") if isinstance(data, dict) else None
    if not isinstance(runtimes, list) or not all(isinstance(r, str) for r in runtimes):
        return None
    return list(runtimes)


BUNDLE_RUNTIMES_ENV = "TATER_BUNDLE_RUNTIMES"
DEFAULT_BUNDLE_RUNTIMES = "llama_cpp"
# runtime (provider name) -> modules that must be importable in the build environment
RUNTIME_IMPORTS: dict[str, tuple[str, ...]] = {
    "llama_cpp": ("llama_cpp",),
    "mlx_lm": ("mlx", "mlx_lm"),
    "hf_transformers": ("transformers", "torch"),
}


class BundleConfigError(ValueError):
    """The runtime selection for a bundle build cannot be honoured."""


def select_runtimes(value: str | None, is_installed: Callable[[str], bool]) -> tuple[list[str], list[str]]:
    """Runtimes to collect into a bundle, and warnings, from ``$TATER_BUNDLE_RUNTIMES`` (``value``).

    ``value`` is a comma list of provider names; None means the default (llama_cpp). A runtime
    is bundled when selected and all its modules are installed (``is_installed(module)``).
    Unknown names are an error; so is a missing runtime that was selected explicitly, while a
    missing default runtime only gives a warning.
    """
    explicit = value is not None
    requested = [r.strip() for r in (value if explicit else DEFAULT_BUNDLE_RUNTIMES).split(",") if r.strip()]
    unknown = sorted(set(requested) - set(RUNTIME_IMPORTS))
    if unknown:
        raise BundleConfigError(
            f"{BUNDLE_RUNTIMES_ENV}: unknown runtime(s) {unknown}; known: {sorted(RUNTIME_IMPORTS)}"
        )
    bundled: list[str] = []
    warnings: list[str] = []
    for name in dict.fromkeys(requested):
        missing = [m for m in RUNTIME_IMPORTS[name] if not is_installed(m)]
        if not missing:
            bundled.append(name)
            continue
        msg = f"runtime {name!r} selected but not installed (missing {missing})"
        if explicit:
            raise BundleConfigError(msg)
        warnings.append(f"{msg}; building without it")
    return bundled, warnings
