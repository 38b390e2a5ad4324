"""Turn what a user points at (a GGUF file, a model folder, a row id) into a model row."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from app.providers import provider_class
from app.settings import ModelRow, Settings

GGUF_MAGIC = b"GGUF"


class SourceError(ValueError):
    """The path or id does not name a usable model; the message says why."""


def check_gguf(path: Path) -> None:
    """SourceError unless ``path`` starts with the GGUF magic bytes (a renamed text file does not)."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise SourceError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if head != GGUF_MAGIC:
        raise SourceError(f"{path} is not a GGUF model: it does not start with the GGUF signature "
                          "(a renamed or incompletely downloaded file?)")


def provider_for_path(path: Path) -> str:
    """``llama_cpp`` for GGUF files; MLX for folders on Apple silicon with mlx-lm; else Transformers."""
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            check_gguf(path)
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


def cached_repo_row(repo_id: str, snapshots: dict[str, Path]) -> ModelRow:
    """A row for a repository of the local Hugging Face cache (``snapshots``: repo id -> its newest
    snapshot folder): its GGUF file for a GGUF repository, else the Transformers/MLX folder."""
    repo_id = repo_id.strip()
    folder = snapshots.get(repo_id)
    if folder is None:
        raise SourceError(f"'{repo_id}' is not in the local Hugging Face cache (nothing is downloaded): "
                          "pick one of the cached repositories.")
    ggufs = sorted(p for p in folder.rglob("*.gguf") if p.is_file())
    if ggufs:
        path = ggufs[0]  # the snapshot path (not the blob) names the repo in the row id
        check_gguf(path)
        return provider_class("llama_cpp").row_for(str(path))
    if not (folder / "config.json").exists():
        raise SourceError(f"'{repo_id}' in the cache has neither a GGUF file nor a config.json: it is "
                          "not a model this app can load.")
    return provider_class(provider_for_path(folder)).row_for(repo_id)
