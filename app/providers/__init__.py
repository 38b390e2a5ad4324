"""Model runtimes.  Each lives in its own module and is imported only when used."""

from __future__ import annotations

import importlib

from app.providers.base import Provider

# provider name (row id prefix, ``owned_by``) -> "module:Class"
PROVIDER_PATHS: dict[str, str] = {
    "llama_cpp": "app.providers.llama_cpp:LlamaCppProvider",
    "mlx_lm": "app.providers.mlx_lm:MlxProvider",
    "hf_transformers": "app.providers.hf_transformers:TransformersProvider",
    "remote": "app.providers.remote:RemoteProvider",
    "pool": "app.providers.pool:PoolProvider",
}


class UnknownProvider(KeyError):
    """No runtime of that name."""


def provider_class(name: str) -> type[Provider]:
    """The provider class for ``name`` (imports its module)."""
    try:
        module_name, cls_name = PROVIDER_PATHS[name].split(":")
    except KeyError:
        known = ", ".join(sorted(PROVIDER_PATHS))
        raise UnknownProvider(f"unknown provider {name!r} (known: {known})") from None
    return getattr(importlib.import_module(module_name), cls_name)


def get_provider(name: str) -> Provider:
    """A fresh instance of the named provider."""
    return provider_class(name)()
