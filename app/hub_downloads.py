"""Search the Hugging Face Hub and download models into the standard Hugging Face cache.

Everything goes through ``huggingface_hub`` (``HfApi.list_models``, ``model_info``,
``hf_hub_download``, ``snapshot_download``), so other tools share the files and the Hub's own
retry logic applies: a connection dropped mid-file is resumed with a ``Range`` request.
``HF_ENDPOINT`` and ``HF_HUB_CACHE``/``HF_HOME`` are read at each call (tests point them at a
stand-in Hub).  The token for gated or private repositories is kept in the OS keyring
(:data:`TOKEN_ENTRY`); ``HF_TOKEN`` works too.

* :func:`search` finds repositories for a runtime: GGUF for llama.cpp, MLX for mlx-lm,
  safetensors text-generation models for Transformers.
* :func:`list_choices` lists what can be downloaded from a repository, with sizes and whether
  each fits in this machine's memory: one choice per GGUF file (a quantisation), or the whole
  folder for MLX / Transformers.
* :func:`download` fetches a choice with progress (bytes, speed, time left) and cancellation,
  verifies LFS files' SHA-256 against the Hub's, and returns the model's path in the cache.

Failures are :class:`DownloadError` with a message for a person (a gated repository says where
to accept its terms and how to store a token).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from app.disk_models import default_roots, folder_provider, is_chat_gguf_name
from app.keystore import KeystoreUnavailable, SecretStore
from app.memory_estimate import available_memory, rough_total

TOKEN_ENTRY = "huggingface:token"
FOLDER_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
HASH_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A search or download failed; the message says why and what to do."""


class DownloadCancelled(DownloadError):
    """The user cancelled the download (the partial file is removed)."""


@dataclass(frozen=True)
class RepoHit:
    """A search result."""

    repo_id: str
    downloads: int
    likes: int
    gated: bool
    runtime: str


@dataclass(frozen=True)
class Choice:
    """Something to download from a repository: one GGUF file, or the whole model folder."""

    repo_id: str
    filename: str | None  # None: the whole folder
    size: int
    runtime: str
    fits: bool  # the rough memory need fits what is available now
    sha256: str | None = None  # LFS checksum (GGUF files)

    @property
    def label(self) -> str:
        return self.filename or f"{self.repo_id} (folder)"


@dataclass(frozen=True)
class Progress:
    """Where a download is: bytes so far of ``total``, speed, seconds left (None: unknown)."""

    done: int
    total: int | None
    speed: float  # bytes per second since the start
    eta: float | None


def hub_endpoint() -> str | None:
    """``HF_ENDPOINT`` now (None: huggingface.co)."""
    return os.environ.get("HF_ENDPOINT") or None


def cache_dir() -> Path:
    """The Hugging Face cache in effect now."""
    return default_roots().hf_cache or Path.home() / ".cache" / "huggingface" / "hub"


def stored_token(secrets: SecretStore | None = None) -> str | None:
    """The Hub token from the keyring (None when unset or the keyring is unavailable)."""
    try:
        return (secrets or SecretStore()).get(TOKEN_ENTRY)
    except KeystoreUnavailable:
        return None


def set_token(token: str | None, secrets: SecretStore | None = None) -> None:
    """Store (or with None/"" delete) the Hub token in the keyring."""
    store = secrets or SecretStore()
    if token:
        store.set(TOKEN_ENTRY, token)
    else:
        store.delete(TOKEN_ENTRY)


def _api(token: str | None) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub_endpoint(), token=token or None)


def _friendly(exc: Exception, repo_id: str) -> DownloadError:
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    if isinstance(exc, GatedRepoError):
        page = f"{hub_endpoint() or 'https://huggingface.co'}/{repo_id}"
        return DownloadError(
            f"{repo_id} is a gated repository: accept its terms at {page} while logged in, then "
            f"store your Hugging Face token (tater models token set, or the Models page).")
    if isinstance(exc, RepositoryNotFoundError):
        return DownloadError(f"{repo_id} was not found on the Hub, or it is private: check the "
                             f"name, or store a token that can read it (tater models token set).")
    if isinstance(exc, HfHubHTTPError):
        return DownloadError(f"the Hub refused the request for {repo_id}: {exc}")
    if isinstance(exc, OfflineModeIsEnabled):
        return DownloadError("Hugging Face offline mode is on (HF_HUB_OFFLINE): unset it to search "
                             "or download")
    return DownloadError(f"the Hub request for {repo_id} failed (is the network up?): "
                         f"{type(exc).__name__}: {exc}")


def search(query: str, runtime: str = "llama_cpp", *, limit: int = 20,
           token: str | None = None) -> list[RepoHit]:
    """Repositories matching ``query`` that ``runtime`` can run, most downloaded first."""
    filters = {"llama_cpp": ["gguf"], "mlx_lm": ["mlx"], "hf_transformers": ["safetensors"]}
    if runtime not in filters:
        raise DownloadError(f"unknown runtime {runtime!r} (llama_cpp, mlx_lm, hf_transformers)")
    extra: dict[str, Any] = {"pipeline_tag": "text-generation"} if runtime == "hf_transformers" else {}
    try:
        found = _api(token or stored_token()).list_models(
            search=query or None, filter=filters[runtime], sort="downloads", limit=limit, **extra)
        return [RepoHit(m.id, int(m.downloads or 0), int(m.likes or 0), bool(m.gated), runtime)
                for m in found]
    except Exception as exc:
        raise _friendly(exc, query) from exc


def list_choices(repo_id: str, *, token: str | None = None,
                 available: int | None = None) -> list[Choice]:
    """What can be downloaded from ``repo_id``, with sizes and whether each fits in memory."""
    try:
        info = _api(token or stored_token()).model_info(repo_id, files_metadata=True)
    except Exception as exc:
        raise _friendly(exc, repo_id) from exc
    free = available_memory() if available is None else available
    files = info.siblings or []
    ggufs = [s for s in files if is_chat_gguf_name(Path(s.rfilename).name)]
    choices = [Choice(repo_id, s.rfilename, int(s.size or 0), "llama_cpp",
                      rough_total(int(s.size or 0)) <= free, s.lfs.sha256 if s.lfs else None)
               for s in sorted(ggufs, key=lambda s: s.size or 0)]
    names = {s.rfilename for s in files}
    if "config.json" in names and any(n.endswith(".safetensors") for n in names):
        size = sum(int(s.size or 0) for s in files
                   if any(fnmatch(s.rfilename, p) for p in FOLDER_PATTERNS))
        runtime = "mlx_lm" if "mlx" in (info.tags or []) else folder_provider()
        choices.append(Choice(repo_id, None, size, runtime, rough_total(size) <= free))
    return choices


class _Meter:
    """Turns byte counts from huggingface_hub's progress bars into :class:`Progress` calls."""

    def __init__(self, total: int | None, on_progress: Callable[[Progress], None] | None,
                 cancel: threading.Event | None) -> None:
        self.total, self.on_progress, self.cancel = total, on_progress, cancel
        self.done = 0
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def add(self, n: int) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise DownloadCancelled("the download was cancelled")
        with self.lock:
            self.done += n
            elapsed = max(time.monotonic() - self.started, 1e-6)
            speed = self.done / elapsed
            left = None if not self.total or speed <= 0 else max(self.total - self.done, 0) / speed
            progress = Progress(self.done, self.total, speed, left)
        if self.on_progress is not None:
            self.on_progress(progress)

    def tqdm_class(self) -> type:
        from huggingface_hub.utils import tqdm as hf_tqdm

        meter = self

        class MeterTqdm(hf_tqdm):  # type: ignore[misc, valid-type]
            """huggingface_hub's bar, silent, reporting the bytes written to the meter."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                self.counts = kwargs.pop("name", None) in BYTE_BARS
                kwargs["disable"] = True
                super().__init__(*args, **kwargs)

            def update(self, n: float | None = 1) -> bool | None:
                if n and self.counts:
                    meter.add(int(n))
                return None

        return MeterTqdm


# huggingface_hub's bars that count the bytes written (one file; all files of a snapshot)
BYTE_BARS = frozenset({"huggingface_hub.http_get", "huggingface_hub.snapshot_download"})


def download(choice: Choice, *, token: str | None = None,
             on_progress: Callable[[Progress], None] | None = None,
             cancel: threading.Event | None = None) -> Path:
    """Download ``choice`` into the Hugging Face cache; the GGUF file or the model folder."""
    from huggingface_hub import hf_hub_download, snapshot_download

    meter = _Meter(choice.size or None, on_progress, cancel)
    common: dict[str, Any] = {"repo_id": choice.repo_id, "cache_dir": str(cache_dir()),
                              "endpoint": hub_endpoint(), "token": token or stored_token(),
                              "tqdm_class": meter.tqdm_class()}
    try:
        if choice.filename is None:
            return Path(snapshot_download(allow_patterns=FOLDER_PATTERNS, **common))
        path = Path(hf_hub_download(filename=choice.filename, **common))
    except DownloadError:
        raise
    except Exception as exc:
        raise _friendly(exc, choice.repo_id) from exc
    if choice.sha256:
        verify_sha256(path, choice.sha256)
    return path


def verify_sha256(path: Path, expected: str) -> None:
    """Raise :class:`DownloadError` (and remove the cached blob) when the checksum differs."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != expected.lower():
        blob = path.resolve()
        path.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
        raise DownloadError(f"{path.name} is corrupt (SHA-256 {digest.hexdigest()[:12]}…, the Hub "
                            f"says {expected[:12]}…); it was removed: download it again.")
