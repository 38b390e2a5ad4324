"""Turn what a user points at (a GGUF file, a model folder, a row id, a model found on disk)
into a model row, and add rows to the settings (the tray and ``tater models`` share this)."""

from __future__ import annotations

from pathlib import Path

from app.disk_models import GGUF_MAGIC, FoundModel, folder_provider
from app.hub_downloads import Choice
from app.providers import provider_class
from app.settings import ModelRow, Settings, SettingsStore


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
    return folder_provider()


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


def row_for_found(found: FoundModel) -> ModelRow:
    """The row for a model found on disk; Ollama and LM Studio models keep their names."""
    cls = provider_class(found.provider)
    if found.origin in ("ollama", "lmstudio"):
        row = cls.row_for(str(found.path))
        return row.model_copy(update={"id": f"{found.provider}::{found.origin}::{found.name}",
                                      "display_name": found.label})
    if found.origin == "hf_cache" and found.provider != "llama_cpp" and found.repo_id:
        return cls.row_for(found.repo_id)  # resolved in the cache at load time
    return cls.row_for(str(found.path))


def add_row(store: SettingsStore, row: ModelRow, *, activate: bool | None = None) -> ModelRow:
    """Save ``row`` (or find the saved row with the same runtime and source) and return it.

    The row becomes the active model when ``activate`` is true, or when it is None and no
    model is active yet (the first model a user gets is the one the API answers with).
    """
    saved = store.saved
    existing = saved.row(row.id) or next(
        (r for r in saved.models if r.provider == row.provider and r.source == row.source), None)
    models = saved.models if existing else [*saved.models, row]
    chosen = existing or row
    make_active = activate if activate is not None else not saved.active_model
    changes: dict[str, object] = {"models": models}
    if make_active:
        changes["active_model"] = chosen.id
    store.update(**changes)
    return chosen


def remove_row(store: SettingsStore, row_id: str) -> ModelRow:
    """Remove a row (files stay where they are); the active model is cleared if it was this."""
    saved = store.saved
    row = saved.row(row_id)
    if row is None:
        raise SourceError(f"No configured model has the id '{row_id}'.")
    changes: dict[str, object] = {"models": [r for r in saved.models if r.id != row_id]}
    if saved.active_model == row_id:
        changes["active_model"] = None
    store.update(**changes)
    return row


def row_for_download(choice: Choice, path: Path) -> ModelRow:
    """The row for a finished download: the GGUF file in the cache, or the cached repo id."""
    cls = provider_class(choice.runtime)
    if choice.filename is None:
        return cls.row_for(choice.repo_id)  # resolved in the Hugging Face cache at load time
    return cls.row_for(str(path))



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
