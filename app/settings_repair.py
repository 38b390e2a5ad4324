"""Recovering a damaged settings file: keep what is valid, say what is not, sweep up after
killed writes.  Generic over the pydantic model, so :mod:`app.settings` stays about the settings."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

MAX_REPAIR_ROUNDS = 20


def repair(model: type[M], data: dict[str, Any], exc: ValidationError) -> tuple[M | None, list[str]]:
    """Drop each bad value (its default applies) until ``data`` validates as ``model``.

    A value whose removal leaves its container invalid (a model row's required field) takes
    the container with it.  Returns the settings (None when a problem has no field to drop,
    e.g. duplicate model ids) and one line per dropped value.
    """
    data = copy.deepcopy(data)
    problems: list[str] = []
    for _ in range(MAX_REPAIR_ROUNDS):
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            if err.get("type") == "missing":
                loc = loc[:-1]  # the container cannot stand without it
            if not loc or not _drop(data, loc):
                return None, problems
            where = ".".join(str(p) for p in loc)
            problems.append(f"{where} ({err.get('msg', 'invalid')})")
            break  # locations after this one may have shifted (a list item went away)
        try:
            return model.model_validate(data), problems
        except ValidationError as again:
            exc = again
    return None, problems


def _drop(data: Any, loc: tuple[Any, ...]) -> bool:
    """Remove the value at ``loc`` (dict keys and list indices); False when it is not there."""
    for part in loc[:-1]:
        if not _holds(data, part):
            return False
        data = data[part]
    if not _holds(data, loc[-1]):
        return False
    del data[loc[-1]]
    return True


def _holds(container: Any, key: Any) -> bool:
    if isinstance(container, dict):
        return key in container
    return isinstance(container, list) and isinstance(key, int) and 0 <= key < len(container)


def unknown_keys(settings: BaseModel) -> list[str]:
    """Dotted paths of keys the settings models do not declare (``limits.qeue_depth``)."""
    found: list[str] = []

    def walk(model: BaseModel, prefix: str) -> None:
        found.extend(prefix + k for k in (model.model_extra or {}))
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                walk(value, f"{prefix}{name}.")
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, BaseModel):
                        walk(item, f"{prefix}{name}[{i}].")

    walk(settings, "")
    return found


TEMP_FILE_MIN_AGE = 60.0
"""Seconds before a temp file beside settings.json counts as orphaned (a live write takes ms)."""


def remove_orphan_temp_files(config_dir: Path, file_name: str, now: float | None = None) -> list[Path]:
    """Delete temp files that interrupted writes of ``file_name`` left (``.settings.json.*``, as
    its atomic writer names them); the removed paths."""
    now = time.time() if now is None else now
    removed = []
    try:
        candidates = list(config_dir.glob(f".{file_name}.*"))
    except OSError:
        return removed
    for path in candidates:
        try:
            if path.is_file() and now - path.stat().st_mtime > TEMP_FILE_MIN_AGE:
                path.unlink()
                removed.append(path)
        except OSError:
            continue
    if removed:
        log.info("removed %d temp file(s) left by interrupted settings writes", len(removed))
    return removed
