"""Verbas: small tool plugins Hydra can use (built-ins, entry points, plugin files).

A plugin is a ``.py`` file in ``<config dir>/verbas/`` or an installed package exposing an
entry point in the ``tater.verbas`` group (a Verba, a list of them, a module, or a factory)::

    from typing import Annotated
    from pydantic import Field
    from app.verbas import VerbaContext, VerbaResult, verba

    @verba(id="greet", name="Greeter", description="Greets someone.",
           when_to_use="the user asks to greet a person.", default_enabled=True)
    def greet(ctx: VerbaContext, name: Annotated[str, Field(max_length=40)]) -> VerbaResult:
        return VerbaResult.success(f"Hello {name}, from session {ctx.origin.session_id}")

The typed signature becomes the arguments schema (``ctx`` is not an argument: it carries the
trusted origin and the Verba's settings).  Raise :class:`VerbaError` to fail with a reason.
"""

from __future__ import annotations

from app.verbas.base import (
    RESERVED_ARGS,
    ArgumentsInvalid,
    Origin,
    SettingField,
    Verba,
    VerbaContext,
    VerbaError,
    VerbaResult,
    verba,
)
from app.verbas.registry import (
    ENTRY_POINT_GROUP,
    PluginProblem,
    VerbaRegistry,
    secret_entry,
    set_enabled,
    set_setting,
)

__all__ = ["ENTRY_POINT_GROUP", "RESERVED_ARGS", "ArgumentsInvalid", "Origin", "PluginProblem",
           "SettingField", "Verba", "VerbaContext", "VerbaError", "VerbaRegistry", "VerbaResult",
           "secret_entry", "set_enabled", "set_setting", "verba"]
