"""A short list of small chat models to suggest on first run: a data table, never fetched.

Each entry is one GGUF file in a public (not gated) Hugging Face repository that llama.cpp
runs on an ordinary laptop.  Sizes are what the Hub lists for the file, rounded; the download
itself reads the exact size and checksum from the Hub (:func:`choice_for`).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.hub_downloads import Choice, DownloadError, list_choices

MB = 1_000_000


@dataclass(frozen=True)
class RecommendedModel:
    """A model to suggest: what it is called, where it lives, how big, what it is good at."""

    name: str
    repo_id: str
    filename: str
    size: int  # bytes, approximately
    good_at: str


RECOMMENDED: tuple[RecommendedModel, ...] = (
    RecommendedModel("Qwen2.5 0.5B Instruct (Q4_K_M)", "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
                     "qwen2.5-0.5b-instruct-q4_k_m.gguf", 491 * MB,
                     "The smallest useful chat model: fast on any machine; short answers, "
                     "simple rewriting and classification."),
    RecommendedModel("Llama 3.2 1B Instruct (Q4_K_M)", "bartowski/Llama-3.2-1B-Instruct-GGUF",
                     "Llama-3.2-1B-Instruct-Q4_K_M.gguf", 808 * MB,
                     "General chat and summaries in English; long context (128k)."),
    RecommendedModel("Qwen2.5 Coder 1.5B Instruct (Q4_K_M)",
                     "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
                     "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 1_120 * MB,
                     "Code: completion, explanations and small edits in many languages."),
    RecommendedModel("SmolLM2 1.7B Instruct (Q4_K_M)", "HuggingFaceTB/SmolLM2-1.7B-Instruct-GGUF",
                     "smollm2-1.7b-instruct-q4_k_m.gguf", 1_060 * MB,
                     "Everyday chat and following instructions; fully open training data."),
    RecommendedModel("Phi-3.5 mini Instruct (Q4_K_M)", "bartowski/Phi-3.5-mini-instruct-GGUF",
                     "Phi-3.5-mini-instruct-Q4_K_M.gguf", 2_390 * MB,
                     "Reasoning and maths for its size; needs about 4 GB of memory."),
)


def choice_for(model: RecommendedModel, *, available: int | None = None) -> Choice:
    """The download for ``model``, with the exact size and checksum the Hub lists now."""
    for choice in list_choices(model.repo_id, available=available):
        if choice.filename == model.filename:
            return choice
    raise DownloadError(f"{model.repo_id} no longer has {model.filename}: search for "
                        f"{model.name.split(' (')[0]} instead.")
