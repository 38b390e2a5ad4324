"""Typed settings, persisted as JSON in the config dir.

Writes are atomic (temp file + ``os.replace``) and the previous good file is kept as
``settings.json.bak``; temp files a killed write left behind are removed at start.  A file
that is not JSON is moved aside (never overwritten) and the app starts from the backup, else
from defaults.  A file with some bad values keeps every valid one: only the bad fields go back
to their defaults (a model row that cannot stand without its bad field is dropped), the
original is moved aside, and :attr:`SettingsStore.warnings` says which (the tray shows them).
Unknown keys are kept (a newer version may have written them) and reported the same way.
Environment variables (``TATER_OPENAI_API_*``) overlay the file without being written to it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.mcp.config import McpSettings
from app.settings_repair import remove_orphan_temp_files, repair, unknown_keys

log = logging.getLogger(__name__)

Mode = Literal["direct", "hydra"]
SETTINGS_FILE = "settings.json"


class ModelRow(BaseModel):
    """One configured model: ``id`` is what clients put in ``model``."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    source: str = Field(min_length=1, description="Path, repo id, or upstream model name.")
    display_name: str = ""
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.display_name or self.id


class HydraSettings(BaseModel):
    """Hydra agent loop settings (see app.hydra)."""

    model_config = ConfigDict(extra="allow")

    persona: str = ""
    history_messages: int = Field(default=8, ge=0, le=200)
    max_steps: int = Field(default=6, ge=1, le=50)
    max_llm_calls: int = Field(default=16, ge=1, le=200)
    tool_timeout_seconds: float = Field(default=20.0, gt=0, le=600)
    turn_timeout_seconds: float = Field(default=120.0, gt=0, le=3600)
    tool_protocol: Literal["auto", "native", "json"] = "auto"
    """How the doer calls tools: the model's native tool calls, JSON in text, or ``auto`` (native
    when the runtime supports it)."""


class LimitSettings(BaseModel):
    """Request limits and server exposure."""

    model_config = ConfigDict(extra="allow")

    queue_depth: int = Field(default=32, ge=1, le=10_000)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_messages: int = Field(default=1000, ge=1)
    max_content_chars: int = Field(default=1_000_000, ge=1)
    allowed_origins: list[str] = Field(default_factory=list)
    allowed_hosts: list[str] = Field(default_factory=list)
    auth_failures_per_minute: int = Field(default=20, ge=1)
    token_timeout_seconds: float = Field(default=60.0, ge=1, le=3600)
    """Watchdog: the longest a local runtime may take for one token (prefill: see RuntimeCall)."""


class ResponseStoreSettings(BaseModel):
    """The Responses API's store of past responses (``store: true``; ``previous_response_id``)."""

    model_config = ConfigDict(extra="allow")

    max_responses: int = Field(default=1000, ge=1, le=1_000_000)
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    ttl_minutes: float = Field(default=24 * 60, gt=0)


class MemorySettings(BaseModel):
    """How many models the hub keeps loaded, and for how long."""

    model_config = ConfigDict(extra="allow")

    max_loaded_models: int = Field(default=1, ge=1, le=64)
    idle_unload_minutes: float = Field(default=30.0, ge=0)


class ServerSettings(BaseModel):
    """How the API server shapes replies."""

    model_config = ConfigDict(extra="allow")

    reasoning_field: Literal["reasoning_content", "reasoning"] = "reasoning_content"
    """The chat-completions field that carries a reply's reasoning (clients read one or the other)."""


class Settings(BaseModel):
    """Everything the user can set.  Unknown keys are kept, so nothing is lost on save."""

    model_config = ConfigDict(extra="allow")

    api_enabled: bool = False
    mode: Mode = "direct"
    hydra_tools_allowed: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8501, ge=1, le=65535)
    allow_lan: bool = False
    always_use_active_model: bool = False
    active_model: str | None = None
    models: list[ModelRow] = Field(default_factory=list)
    hydra: HydraSettings = Field(default_factory=HydraSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    responses: ResponseStoreSettings = Field(default_factory=ResponseStoreSettings)
    verbas: dict[str, dict[str, Any]] = Field(default_factory=dict)
    mcp: McpSettings = Field(default_factory=McpSettings)
    start_at_login: bool = False
    messages_models: dict[str, str] = Field(default_factory=dict, description=(
        "Anthropic Messages API: which model answers a client's 'claude-…' model names. Keys are "
        "tiers ('opus', 'sonnet', 'haiku') or shell patterns ('claude-3-5-*'); values are model "
        "ids or aliases ('tater/direct'); an empty value or no match means the active model."))

    @field_validator("host")
    @classmethod
    def _host_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("host must not be empty")
        return v.strip()

    @model_validator(mode="after")
    def _unique_ids(self) -> Settings:
        seen: set[str] = set()
        for row in self.models:
            if row.id in seen:
                raise ValueError(f"duplicate model id {row.id!r}")
            seen.add(row.id)
        return self

    @property
    def bind_host(self) -> str:
        """Where the listener binds: all interfaces only when LAN access is allowed."""
        return "0.0.0.0" if self.allow_lan else self.host

    def row(self, model_id: str | None) -> ModelRow | None:
        """The row with this id, or None."""
        if not model_id:
            return None
        return next((r for r in self.models if r.id == model_id), None)


# -- environment overlay -------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_bool(value: str, name: str = "value") -> bool:
    """Parse 1/0, true/false, yes/no, on/off (any case); raise ValueError otherwise."""
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"{name}={value!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Settings fields set by ``TATER_OPENAI_API_*`` variables, plus warnings for bad values."""
    out: dict[str, Any] = {}
    warnings: list[str] = []
    bools = {"TATER_OPENAI_API_ENABLED": "api_enabled",
             "TATER_OPENAI_API_HYDRA_TOOLS_ENABLED": "hydra_tools_allowed"}
    for var, field_name in bools.items():
        if env.get(var, "").strip():
            try:
                out[field_name] = parse_bool(env[var], var)
            except ValueError as exc:
                warnings.append(f"{exc}; ignored")
    mode = env.get("TATER_OPENAI_API_MODE", "").strip().lower()
    if mode:
        if mode in ("direct", "hydra"):
            out["mode"] = mode
        else:
            warnings.append(f"TATER_OPENAI_API_MODE={mode!r} is not 'direct' or 'hydra'; ignored")
    return out, warnings


# -- the store -----------------------------------------------------------------------

Listener = Callable[[Settings, Settings], None]


class SettingsStore:
    """Loads, validates, saves and publishes settings; safe to share between threads."""

    def __init__(self, config_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.config_dir = Path(config_dir)
        self.path = self.config_dir / SETTINGS_FILE
        self.backup_path = self.path.with_name(SETTINGS_FILE + ".bak")
        self.warnings: list[str] = []
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._overrides, env_warnings = env_overrides(env if env is not None else os.environ)
        self.warnings.extend(env_warnings)
        remove_orphan_temp_files(self.config_dir, SETTINGS_FILE)
        self._saved = self._load()
        self._report_unknown_keys(self._saved)
        self._current = self._apply_overrides(self._saved)

    # reading
    @property
    def current(self) -> Settings:
        """The effective settings (file + environment overlay).  Treat as read-only."""
        return self._current

    @property
    def saved(self) -> Settings:
        """What is in the file (no environment overlay)."""
        return self._saved

    # writing
    def update(self, **changes: Any) -> Settings:
        """Validate and persist changed fields; they take effect at once.  Raises ValueError."""
        with self._lock:
            data = self._saved.model_dump(mode="json")
            data.update({k: _dump(v) for k, v in changes.items()})
            return self._commit(data, dropped=set(changes))

    def replace(self, settings: Settings) -> Settings:
        """Persist a whole settings object (as the settings window's OK does)."""
        with self._lock:
            data = settings.model_dump(mode="json")
            changed = {k for k in data if data[k] != self._saved.model_dump(mode="json").get(k)}
            return self._commit(data, dropped=changed)

    def override(self, **fields: Any) -> Settings:
        """Apply values for this process only (never written), e.g. ``tater serve`` enabling the API."""
        with self._lock:
            old = self._current
            self._overrides.update(fields)
            self._current = self._apply_overrides(self._saved)
            for listener in list(self._listeners):
                listener(old, self._current)
            return self._current

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(old, new)`` after every change; returns an unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _commit(self, data: dict[str, Any], dropped: set[str]) -> Settings:
        try:
            new = Settings.model_validate(data)
        except ValidationError as exc:
            raise ValueError(describe_validation_error(exc)) from exc
        for key in dropped:  # an explicit change wins over the startup environment
            self._overrides.pop(key, None)
        self._write(new)
        old = self._current
        self._saved = new
        self._current = self._apply_overrides(new)
        for listener in list(self._listeners):
            try:
                listener(old, self._current)
            except Exception:  # a broken listener must not undo a saved change
                log.exception("settings listener failed")
        return self._current

    def _apply_overrides(self, s: Settings) -> Settings:
        return s.model_copy(update=self._overrides) if self._overrides else s

    def _write(self, settings: Settings) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        text = settings.model_dump_json(indent=2) + "\n"
        if self.path.exists() and self._file_is_valid(self.path):
            _atomic_write(self.backup_path, self.path.read_bytes())
        _atomic_write(self.path, text.encode())

    # loading
    def _load(self) -> Settings:
        if not self.path.exists():
            if self.backup_path.exists():
                restored = self._try_backup("settings.json is missing")
                if restored:
                    return restored
            return Settings()
        try:
            raw = self.path.read_bytes()
            return Settings.model_validate_json(raw)
        except ValidationError as exc:
            moved = self._set_aside(self.path)
            reason = describe_validation_error(exc)
            msg = f"The settings file had invalid values ({reason}); it was moved to {moved.name}."
            restored = self._try_backup(msg)
            if restored:
                return restored
            repaired = self._repair(raw, exc, moved)
            if repaired is not None:
                return repaired
            self.warnings.append(msg + " Starting from defaults.")
            log.warning(self.warnings[-1])
            return Settings()
        except (ValueError, OSError) as exc:
            moved = self._set_aside(self.path)
            reason = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
            msg = f"The settings file was unreadable ({reason}); it was moved to {moved.name}."
            restored = self._try_backup(msg)
            if restored:
                return restored
            self.warnings.append(msg + " Starting from defaults.")
            log.warning(self.warnings[-1])
            return Settings()

    def _repair(self, raw: bytes, exc: ValidationError, moved: Path) -> Settings | None:
        """Keep every valid field of a JSON file with bad values; None when that is not possible."""
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        repaired, problems = repair(Settings, data, exc)
        if repaired is None:
            return None
        self.warnings.append(f"Some settings were invalid and went back to their defaults: "
                             f"{'; '.join(problems)}. Everything else was kept; the original file "
                             f"was moved to {moved.name}.")
        log.warning(self.warnings[-1])
        self._write(repaired)
        return repaired

    def _report_unknown_keys(self, settings: Settings) -> None:
        unknown = unknown_keys(settings)
        if unknown:
            self.warnings.append(f"The settings file has keys this version does not know (kept, in "
                                 f"case a newer version wrote them; check for typos): "
                                 f"{', '.join(unknown)}.")
            log.warning(self.warnings[-1])

    def _try_backup(self, why: str) -> Settings | None:
        try:
            s = Settings.model_validate_json(self.backup_path.read_bytes())
        except (ValidationError, ValueError, OSError):
            return None
        self.warnings.append(f"{why} Restored the last good copy from {self.backup_path.name}.")
        log.warning(self.warnings[-1])
        _atomic_write(self.path, self.backup_path.read_bytes())
        return s

    @staticmethod
    def _file_is_valid(path: Path) -> bool:
        try:
            Settings.model_validate_json(path.read_bytes())
            return True
        except (ValidationError, ValueError, OSError):
            return False

    @staticmethod
    def _set_aside(path: Path) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = path.with_name(f"{path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
            n += 1
        os.replace(path, target)
        return target


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def describe_validation_error(exc: ValidationError | Exception) -> str:
    """One readable line per problem: ``field.path: message``."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "settings"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)
