"""The Verbas shipped with Tater Desktop (submodules keep their module names)."""

from __future__ import annotations

from app.verbas.base import Verba
from app.verbas.builtin.calculator import calculator as _calculator
from app.verbas.builtin.clock import clock as _clock
from app.verbas.builtin.home_assistant import home_assistant as _home_assistant
from app.verbas.builtin.web_fetch import web_fetch as _web_fetch

BUILTINS: tuple[Verba, ...] = (_clock, _calculator, _home_assistant, _web_fetch)

__all__ = ["BUILTINS"]
