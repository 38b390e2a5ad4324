"""Turn what a user points at (a GGUF file, a model folder, a row id) into a model row."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from app.providers import provider_class
from app.settings import ModelRow, Settings


class SourceError(ValueError):
    """The path or id does not name a usable model; the message says why."""


def provider_for_path(path: Path) -> str:
    """``llama_cpp`` for GGUF files; MLX for folders on Apple silicon with mlx-lm; else Transformers."""
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return "llama_cpp"
        raise SourceError(f"{path} is not a GGUF file (expected a .gguf file or a model folder)")
    if not (path / "config.json").exists():
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs:
            raise SourceError(f"{path} is a folder of GGUF files: point at one of them, e.g. {ggufs[0]}")
        raise SourceError(f"{path} has no config.json: it is not a Transformers/MLX model folder")
    if sys.platform == "darwin" and importlib.util.find_spec("mlx_lm") is not None:
        return "mlx_lm"
    return "hf_transformers"


def resolve_model_arg(value: str, settings: Settings, provider: str | None = None) -> ModelRow:
    """A configured row id, or a new row for a path (not yet saved)."""
    row = settings.row(value)
    if row is not None:
        return row
    path = Path(value).expanduser()
    if not path.exists():
        if "::" in value:
            raise SourceError(f"No configured model has the id '{value}'.")
        raise SourceError(f"Model file or folder not found: {path}")
    path = path.resolve()
    name = provider or provider_for_path(path)
    new = provider_class(name).row_for(str(path))
    existing = next((r for r in settings.models if r.source == new.source and r.provider == name), None)
    return existing or new
