"""Finding Verbas (built-ins, entry points, plugin files), their flags, settings and calls.

Discovery never stops the app: a plugin that fails to import or describe itself is recorded
in :attr:`VerbaRegistry.problems` (name + error) and skipped.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import logging
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from app.verbas.base import (
    Origin,
    Verba,
    VerbaContext,
    VerbaError,
    VerbaResult,
    coerce_result,
)

if TYPE_CHECKING:
    from app.keystore import SecretStore
    from app.settings import Settings, SettingsStore

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "tater.verbas"
PLUGIN_DIR = "verbas"


def secret_entry(verba_id: str, field_name: str) -> str:
    """The keyring entry name of a Verba's secret setting."""
    return f"verba:{verba_id}:{field_name}"


@dataclass(frozen=True)
class PluginProblem:
    """A plugin that could not be used, and why."""

    name: str
    error: str


class VerbaSource(Protocol):
    """Verbas that come and go while the app runs (e.g. the tools of MCP servers)."""

    def verbas(self) -> list[Verba]:
        """The Verbas available now."""
        ...


class VerbaRegistry:
    """All known Verbas, by id, plus the plugins that failed to load."""

    def __init__(self, verbas: Iterable[Verba] = ()) -> None:
        self._verbas: dict[str, Verba] = {}
        self._sources: list[VerbaSource] = []
        self.problems: list[PluginProblem] = []
        for v in verbas:
            self.add(v)

    # -- discovery -------------------------------------------------------------------
    @classmethod
    def discover(cls, config_dir: Path | None = None, *, builtins: bool = True,
                 entry_points: bool = True) -> VerbaRegistry:
        """Built-ins, then the ``tater.verbas`` entry points, then ``<config_dir>/verbas/*.py``."""
        reg = cls()
        if builtins:
            from app.verbas.builtin import BUILTINS

            for v in BUILTINS:
                reg.add(v)
        if entry_points:
            reg.load_entry_points()
        if config_dir is not None:
            reg.load_folder(Path(config_dir) / PLUGIN_DIR)
        return reg

    def add(self, v: Verba, source: str | None = None) -> bool:
        """Register ``v``; a duplicate id is reported and skipped (the first one wins)."""
        if source:
            v.source = source
        if v.id in self._verbas:
            self._problem(v.source, f"Verba id {v.id!r} is already provided by "
                                    f"{self._verbas[v.id].source}")
            return False
        self._verbas[v.id] = v
        return True

    def load_entry_points(self) -> None:
        """Load every entry point in the ``tater.verbas`` group."""
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep.dist, "name", None) or "?"
            label = f"entry point {ep.name} ({dist})"
            try:
                found = _collect(ep.load())
            except Exception as exc:  # a broken plugin must never stop the app
                self._problem(label, _err(exc))
                continue
            self._add_all(found, label)

    def load_folder(self, folder: Path) -> None:
        """Load every ``*.py`` file in ``folder`` (missing folder: nothing to do)."""
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            label = f"plugin file {path.name}"
            try:
                module = _import_file(path)
                found = _collect(module)
            except BaseException as exc:  # SyntaxError, SystemExit in a plugin, ...
                if isinstance(exc, KeyboardInterrupt):
                    raise
                self._problem(label, _err(exc))
                continue
            self._add_all(found, label)

    def _add_all(self, found: list[Verba], label: str) -> None:
        if not found:
            self._problem(label, "no Verba found (define a Verba object or a VERBAS list)")
        for v in found:
            self.add(v, source=label)

    def _problem(self, name: str, error: str) -> None:
        self.problems.append(PluginProblem(name, error))
        log.warning("Verba plugin %s skipped: %s", name, error)

    def attach(self, source: VerbaSource) -> None:
        """Also offer ``source``'s Verbas, read afresh on every lookup (static ids win)."""
        self._sources.append(source)

    @property
    def sources(self) -> list[VerbaSource]:
        return list(self._sources)

    def _dynamic(self) -> list[Verba]:
        out: list[Verba] = []
        for source in self._sources:
            try:
                out.extend(v for v in source.verbas() if v.id not in self._verbas)
            except Exception:  # a broken source must not break the static Verbas
                log.warning("a Verba source failed", exc_info=True)
        return out

    # -- lookup ----------------------------------------------------------------------
    def get(self, verba_id: str) -> Verba | None:
        found = self._verbas.get(verba_id)
        if found is None and self._sources:
            found = next((v for v in self._dynamic() if v.id == verba_id), None)
        return found

    def all(self) -> list[Verba]:
        return [*self._verbas.values(), *self._dynamic()]

    def __contains__(self, verba_id: object) -> bool:
        return isinstance(verba_id, str) and self.get(verba_id) is not None

    # -- flags and settings ----------------------------------------------------------
    @staticmethod
    def is_enabled(v: Verba, settings: Settings) -> bool:
        """The saved flag, else the Verba's default (read-only ones on, acting ones off)."""
        flag = settings.verbas.get(v.id, {}).get("enabled")
        return v.default_enabled if flag is None else bool(flag)

    def enabled(self, settings: Settings, secrets: SecretStore | None = None) -> list[Verba]:
        """Verbas Hydra may offer: enabled and with every required setting filled in."""
        return [v for v in self.all()
                if self.is_enabled(v, settings) and not self.missing_settings(v, settings, secrets)]

    def missing_settings(self, v: Verba, settings: Settings,
                         secrets: SecretStore | None) -> list[str]:
        """Labels of required settings that are not set."""
        values = settings.verbas.get(v.id, {})
        missing = []
        for f in v.settings:
            if not f.required:
                continue
            if f.secret:
                if not self._read_secret(v, f.name, secrets):
                    missing.append(f.label)
            elif values.get(f.name) in (None, ""):
                missing.append(f.label)
        return missing

    def context(self, v: Verba, origin: Origin, settings: Settings, secrets: SecretStore | None,
                timeout: float) -> VerbaContext:
        """The trusted context for one call of ``v``."""
        saved = settings.verbas.get(v.id, {})
        plain = {f.name: saved.get(f.name, f.default) for f in v.settings if not f.secret}
        for key, value in saved.items():  # plugin settings not declared as fields
            if key != "enabled" and key not in plain and not _is_secret(v, key):
                plain[key] = value
        hidden = {f.name: self._read_secret(v, f.name, secrets) for f in v.settings if f.secret}
        return VerbaContext(origin=origin, settings=plain, secrets=hidden, timeout=timeout)

    @staticmethod
    def _read_secret(v: Verba, name: str, secrets: SecretStore | None) -> str | None:
        if secrets is None:
            return None
        try:
            return secrets.get(secret_entry(v.id, name))
        except Exception as exc:  # keyring unavailable: treated as "not configured"
            log.warning("cannot read the %s secret of Verba %s: %s", name, v.id, exc)
            return None

    # -- calling ---------------------------------------------------------------------
    async def invoke(self, v: Verba, args: dict[str, Any], ctx: VerbaContext,
                     timeout: float) -> VerbaResult:
        """Run the handler (sync ones on a thread) within ``timeout``; never raises."""
        kwargs = dict(args)
        if v.wants_ctx:
            kwargs["ctx"] = ctx
        try:
            if v.is_async:
                value = await asyncio.wait_for(v.handler(**kwargs), timeout)
            else:
                value = await asyncio.wait_for(asyncio.to_thread(v.handler, **kwargs), timeout)
            return coerce_result(value)
        except TimeoutError:
            return VerbaResult.failure(f"{v.name} did not finish within {timeout:g} s "
                                       "(the per-tool time limit)")
        except VerbaError as exc:
            return VerbaResult.failure(str(exc) or f"{v.name} failed")
        except Exception as exc:
            log.warning("Verba %s raised", v.id, exc_info=True)
            return VerbaResult.failure(f"{v.name} failed: {_err(exc)}")


# -- settings helpers for the UI / CLI ---------------------------------------------------

def set_enabled(store: SettingsStore, verba_id: str, enabled: bool) -> None:
    """Persist a Verba's enabled flag."""
    verbas = {k: dict(v) for k, v in store.saved.verbas.items()}
    verbas.setdefault(verba_id, {})["enabled"] = bool(enabled)
    store.update(verbas=verbas)


def set_setting(store: SettingsStore, secrets: SecretStore | None, v: Verba, name: str,
                value: Any) -> None:
    """Persist one setting: secret fields go to the keyring, others to the settings file."""
    f = v.setting_field(name)
    if f is not None and f.secret:
        if secrets is None:
            raise ValueError(f"{f.label} is a secret and no keyring is available")
        if value in (None, ""):
            secrets.delete(secret_entry(v.id, name))
        else:
            secrets.set(secret_entry(v.id, name), str(value))
        return
    verbas = {k: dict(val) for k, val in store.saved.verbas.items()}
    verbas.setdefault(v.id, {})[name] = value
    store.update(verbas=verbas)


# -- internals ---------------------------------------------------------------------------

def _is_secret(v: Verba, name: str) -> bool:
    f = v.setting_field(name)
    return bool(f and f.secret)


def _err(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    return f"{type(exc).__name__}: {exc}"


def _import_file(path: Path) -> types.ModuleType:
    name = f"tater_verba_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _collect(obj: Any) -> list[Verba]:
    """Verbas in an entry point target or plugin module (object, list, module, factory)."""
    if isinstance(obj, Verba):
        return [obj]
    if isinstance(obj, types.ModuleType):
        listed = getattr(obj, "VERBAS", None)
        if listed is not None:
            return _collect(listed)
        return [v for v in vars(obj).values() if isinstance(v, Verba)]
    if isinstance(obj, list | tuple):
        out: list[Verba] = []
        for item in obj:
            if not isinstance(item, Verba):
                raise TypeError(f"expected Verba objects, got {type(item).__name__}")
            out.append(item)
        return out
    if callable(obj):
        return _collect(obj())
    raise TypeError(f"expected a Verba, a list of Verbas or a module, got {type(obj).__name__}")
