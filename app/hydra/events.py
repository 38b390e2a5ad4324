"""What a Hydra turn yields: progress notes, answer chunks, and a final report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.providers.base import ChatChunk, ProviderError, Usage


@dataclass(frozen=True)
class Progress:
    """A progress line (the server sends it as an SSE comment ``: text``)."""

    text: str


@dataclass(frozen=True)
class StepRecord:
    """One step Hydra took: which Verba, whether it worked, a short summary."""

    verba: str
    ok: bool
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {"verba": self.verba, "ok": self.ok, "summary": self.summary}


@dataclass
class TurnReport:
    """The last event of a turn: steps, usage over every internal call, the finish reason."""

    steps: list[StepRecord]
    usage: Usage
    finish_reason: str
    notes: list[str] = field(default_factory=list)
    llm_calls: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The ``tater`` extension field of a response."""
        return {"steps": [s.to_dict() for s in self.steps], "notes": list(self.notes),
                "llm_calls": self.llm_calls}


HydraEvent = Progress | ChatChunk | TurnReport


class HydraRequestError(ProviderError):
    """The request cannot be handled by Hydra (400)."""

    status = 400
    code = "invalid_request"
    error_type = "invalid_request_error"
