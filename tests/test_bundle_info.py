"""Runtime selection for bundle builds (used by build.spec)."""

from __future__ import annotations

import pytest

from app.bundle_info import BundleConfigError, select_runtimes


def _installed(*mods: str):
    return lambda mod: mod in mods


def test_default_is_llama_cpp_when_installed() -> None:
    assert select_runtimes(None, _installed("llama_cpp")) == (["llama_cpp"], [])


def test_default_missing_only_warns() -> None:
    bundled, warnings = select_runtimes(None, _installed())
    assert bundled == []
    assert warnings == [
        "runtime 'llama_cpp' selected but not installed (missing ['llama_cpp']); building without it"
    ]


def test_explicit_list_needs_every_module() -> None:
    assert select_runtimes(" mlx_lm, llama_cpp,mlx_lm ", _installed("mlx", "mlx_lm", "llama_cpp")) == (
        ["mlx_lm", "llama_cpp"],
        [],
    )
    with pytest.raises(
        BundleConfigError, match=r"'hf_transformers' selected but not installed \(missing \['torch'\]\)"
    ):
        select_runtimes("hf_transformers", _installed("transformers"))


def test_empty_selection_bundles_no_runtime() -> None:
    assert select_runtimes("", _installed("llama_cpp")) == ([], [])


def test_unknown_runtime() -> None:
    with pytest.raises(BundleConfigError, match=r"unknown runtime\(s\) \['vllm'\]"):
        select_runtimes("llama_cpp,vllm", _installed("llama_cpp"))
