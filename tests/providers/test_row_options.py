"""Each runtime declares its row options (``Provider.options_model``): every key the app writes or
reads is declared, and an unknown or badly typed one is a ModelLoadError naming it."""

from __future__ import annotations

import pytest

from app.providers import PROVIDER_PATHS, provider_class
from app.providers.base import ModelLoadError
from app.settings import ModelRow

READ_KEYS = {  # what the runtimes, the memory estimate and the CLI read from rows (grep opts.get)
    "llama_cpp": {"n_ctx", "n_gpu_layers", "n_threads", "n_threads_batch", "n_batch", "logits_all",
                  "verbose", "chat_template", "top_k", "min_p", "repeat_penalty", "parallel",
                  "parallel_ctx", "prefix_cache_mb", "flash_attn", "seed"},
    "hf_transformers": {"context_size", "cache_dir", "chat_template", "device", "threads", "parallel",
                        "parallel_ctx"},
    "mlx_lm": {"context_size", "cache_dir", "chat_template", "parallel", "prefix_cache_mb"},
    "remote": {"base_url", "timeout", "max_parallel"},
    "pool": {"members", "retry_seconds"},
}


@pytest.mark.parametrize("name", sorted(READ_KEYS))
def test_every_runtime_declares_the_keys_it_reads(name: str) -> None:
    model = provider_class(name).options_model
    assert model is not None and set(model.model_fields) == READ_KEYS[name]
    assert all(f.description for f in model.model_fields.values())  # the Models page's help


def test_every_built_in_runtime_is_covered() -> None:
    built_in = {name for name, path in PROVIDER_PATHS.items() if path.startswith("app.")}
    assert built_in == set(READ_KEYS)


def test_cli_context_option_is_declared_by_each_local_runtime() -> None:
    from app.cli import CONTEXT_OPTION

    for name in ("llama_cpp", "hf_transformers", "mlx_lm"):
        assert CONTEXT_OPTION.get(name, "context_size") in READ_KEYS[name]


@pytest.mark.parametrize(("name", "options", "expected"), [
    ("llama_cpp", {"n_ctxx": 512}, "unknown option 'n_ctxx' for llama_cpp (known: n_ctx, "),
    ("llama_cpp", {"n_gpu_layers": -2}, "option 'n_gpu_layers' for llama_cpp: "),
    ("hf_transformers", {"context": 512}, "unknown option 'context' for hf_transformers"),
    ("mlx_lm", {"threads": 2}, "unknown option 'threads' for mlx_lm"),
    ("remote", {"base_url": "http://127.0.0.1:9/v1", "api_key": "sk-x"},
     "unknown option 'api_key' for remote"),
    ("remote", {}, "option 'base_url' is required for remote"),
])
def test_unknown_or_bad_option_fails_the_load_naming_it(name: str, options: dict,
                                                         expected: str) -> None:
    row = ModelRow(id=f"{name}::x", provider=name, source="/nowhere", options=options)
    provider = provider_class(name)()
    if provider.available():
        pytest.fail(f"{name} must be installed for this test: {provider.available()}")
    with pytest.raises(ModelLoadError) as caught:
        provider.load(row)
    assert expected in caught.value.message and f"{name}::x" in caught.value.message


def test_declared_options_validate_and_keep_their_defaults() -> None:
    from app.providers.row_options import LlamaCppOptions, RemoteOptions

    opts = LlamaCppOptions.model_validate({"n_ctx": "2048", "flash_attn": True})
    assert (opts.n_ctx, opts.n_gpu_layers, opts.parallel, opts.top_k) == (2048, -1, 4, 40)
    assert RemoteOptions.model_validate({"base_url": "http://h/v1"}).timeout is None
