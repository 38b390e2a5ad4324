"""Tiny random-weight models the app and its tests build themselves (no hub downloads)."""

from __future__ import annotations

from app.tinymodels.gguf_model import DEFAULT_PIECES, write_tiny_gguf

__all__ = ["DEFAULT_PIECES", "write_tiny_gguf"]
