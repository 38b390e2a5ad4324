"""A configured model row as the Models page edits it, and the local Hugging Face cache it can
add from (nothing is downloaded)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.settings import ModelRow
from app.ui.pages.option_fields import merge_options, split_options


@dataclass
class Entry:
    """A row being edited: its fields, its options as text, and a pending remote key."""

    data: dict[str, Any]
    options_text: str  # the options that have no typed field, as JSON
    original_id: str | None = None  # the saved id (None for a new row)
    api_key: str = ""
    typed: dict[str, str] = field(default_factory=dict)  # typed option field -> its text

    @classmethod
    def of(cls, row: ModelRow, original: bool = True) -> Entry:
        data = row.model_dump(mode="json")
        typed, rest = split_options(row.provider, data.get("options") or {})
        return cls(data, json.dumps(rest, indent=2), row.id if original else None, typed=typed)

    def options(self) -> tuple[dict[str, Any] | None, dict[str, str]]:
        """(the row's options, or None when the JSON is not an object; field -> error)."""
        try:
            rest = json.loads(self.options_text or "{}")
        except ValueError:
            return None, {}
        if not isinstance(rest, dict):
            return None, {}
        return merge_options(str(self.data.get("provider", "")), self.typed, rest)

    def row(self) -> ModelRow | None:
        """The row as Apply would save it now; None while its fields or options do not parse."""
        options, errors = self.options()
        if options is None or errors:
            return None
        try:
            return ModelRow.model_validate({**self.data, "options": options})
        except ValidationError:
            return None


def cached_snapshots() -> dict[str, Path]:
    """Model repos in the local Hugging Face cache -> their newest snapshot (nothing downloaded)."""
    try:
        from huggingface_hub import scan_cache_dir

        out: dict[str, Path] = {}
        for repo in scan_cache_dir(os.environ.get("HF_HUB_CACHE") or None).repos:
            if repo.repo_type == "model" and repo.revisions:
                newest = max(repo.revisions, key=lambda r: r.last_modified)
                out[repo.repo_id] = Path(newest.snapshot_path)
        return out
    except Exception:  # no cache yet, or huggingface_hub missing
        return {}


def cached_repo_ids() -> list[str]:
    """Model repos in the local Hugging Face cache."""
    return sorted(cached_snapshots())
