"""Server-sent events framing for OpenAI-style streams."""

from __future__ import annotations

import json
from typing import Any

DONE = b"data: [DONE]\n\n"


def event(payload: dict[str, Any]) -> bytes:
    """One ``data:`` event (JSON has no raw newlines, so one data line suffices)."""
    return b"data: " + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def comment(text: str) -> bytes:
    """An SSE comment line (``: text``): keeps the connection alive, ignored by clients."""
    lines = text.replace("\r", "").split("\n")
    return b"".join(b": " + line.encode() + b"\n" for line in lines) + b"\n"


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}
