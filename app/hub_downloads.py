"""Search the Hugging Face Hub and download models into the standard Hugging Face cache.

Everything goes through ``huggingface_hub`` (``HfApi.list_models``, ``model_info``,
``hf_hub_download``, ``snapshot_download``, ``get_hf_file_metadata``), so other tools share
the files.
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
  The bytes travel into a partial file of our own next to the blob (huggingface_hub deletes
  its partial files on failure); a cancelled, cut-off or killed download keeps it, and the
  next download resumes it with a ``Range`` request, in this run or after a restart.

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
from urllib.parse import urlsplit

from app.disk_models import default_roots, folder_provider, is_chat_gguf_name
from app.keystore import KeystoreUnavailable, SecretStore
from app.memory_estimate import available_memory, rough_total

TOKEN_ENTRY = "huggingface:token"
FOLDER_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
HASH_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A search or download failed; the message says why and what to do."""


class TokenNeeded(DownloadError):
    """The repository is gated or private: the user needs a Hugging Face token that may read it
    (stored with :func:`set_token`); the message says where to get access."""


class DownloadCancelled(DownloadError):
    """The user cancelled the download (the partial file stays, to resume later)."""


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

    page = f"{hub_endpoint() or 'https://huggingface.co'}/{repo_id}"
    if isinstance(exc, GatedRepoError):
        status = exc.response.status_code if exc.response is not None else None
        if status == 403:  # a token was sent, but its account has no access yet
            return TokenNeeded(
                f"{repo_id} is a gated repository and the stored Hugging Face token has no access "
                f"to it: open {page}, accept its terms with the account that owns the token "
                f"(approval can take a while), then try again.")
        return TokenNeeded(
            f"{repo_id} is a gated repository: accept its terms at {page} while logged in, then "
            f"store your Hugging Face token (a read token from {TOKENS_PAGE}) in the token field "
            f"below, or with `tater models token set`.")
    if isinstance(exc, RepositoryNotFoundError):
        return TokenNeeded(f"{repo_id} was not found on the Hub, or it is private: check the "
                           f"name, or store a token that can read it (the token field, or "
                           f"`tater models token set`).")
    if isinstance(exc, HfHubHTTPError):
        return DownloadError(f"the Hub refused the request for {repo_id}: {exc}")
    if isinstance(exc, OfflineModeIsEnabled):
        return DownloadError("Hugging Face offline mode is on (HF_HUB_OFFLINE): unset it to search "
                             "or download")
    return DownloadError(f"the Hub request for {repo_id} failed (is the network up?): "
                         f"{type(exc).__name__}: {exc}")


TOKENS_PAGE = "https://huggingface.co/settings/tokens"


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
    """Turns byte counts into :class:`Progress` calls; checks for cancellation at each one."""

    def __init__(self, total: int | None, on_progress: Callable[[Progress], None] | None,
                 cancel: threading.Event | None) -> None:
        self.total, self.on_progress, self.cancel = total, on_progress, cancel
        self.done = 0  # bytes of the model on disk, resumed ones included
        self.fresh = 0  # bytes transferred by this download (for the speed)
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise DownloadCancelled("the download was cancelled")

    def add(self, n: int, *, resumed: bool = False) -> None:
        self.check()
        with self.lock:
            self.done += n
            self.fresh += 0 if resumed else n
            elapsed = max(time.monotonic() - self.started, 1e-6)
            speed = self.fresh / elapsed
            left = None if not self.total or speed <= 0 else max(self.total - self.done, 0) / speed
            progress = Progress(self.done, self.total, speed, left)
        if self.on_progress is not None:
            self.on_progress(progress)


def partial_path(repo_id: str, etag: str) -> Path:
    """Where the unfinished download of the blob ``etag`` is kept (it survives a restart)."""
    from huggingface_hub.file_download import repo_folder_name

    return cache_dir() / repo_folder_name(repo_id=repo_id, repo_type="model") / "blobs" / (
        f"{etag}{PARTIAL_SUFFIX}")


def partial_bytes(choice: Choice) -> int:
    """Bytes of ``choice`` already on disk from an unfinished download (GGUF files; else 0)."""
    if choice.filename is None or not choice.sha256:
        return 0
    path = partial_path(choice.repo_id, choice.sha256)  # an LFS file's ETag is its SHA-256
    return path.stat().st_size if path.is_file() else 0


# huggingface_hub names its own per-process temporary files "<etag>.<random>.incomplete" and
# deletes them on failure; ours is one stable name per blob so that any later run resumes it
PARTIAL_SUFFIX = ".tater-partial"
RETRIES = 5  # reconnections in a row without new bytes before giving up


def _fetch_blob(repo_id: str, filename: str, revision: str, token: str | None,
                sha256: str | None, meter: _Meter) -> None:
    """Bring one file's blob into the cache, resuming a partial file with a ``Range`` request.

    The blob is checked against ``sha256`` before it takes its final name, so a corrupt file
    never enters the cache; huggingface_hub then only links it into the snapshot.
    """
    import httpx2
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import (
        WeakFileLock,
        build_hf_headers,
        hf_raise_for_status,
        http_stream_backoff,
    )

    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=hub_endpoint())
    meta = get_hf_file_metadata(url, token=token, endpoint=hub_endpoint())
    if not meta.etag:
        raise DownloadError(f"the Hub sent no ETag for {repo_id}/{filename}")
    partial = partial_path(repo_id, meta.etag)
    blob = partial.with_name(meta.etag)
    if blob.exists():
        meter.add(blob.stat().st_size, resumed=True)
        return
    partial.parent.mkdir(parents=True, exist_ok=True)
    headers = build_hf_headers(token=token)
    headers["Accept-Encoding"] = "identity"
    location = meta.location or url
    if urlsplit(location).netloc != urlsplit(url).netloc:
        headers.pop("authorization", None)  # a CDN does not get the user's token
    lock = partial.parent.parent.parent / ".locks" / partial.parent.parent.name / f"{meta.etag}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(str(lock)), open(partial, "ab") as out:
        have = out.tell()
        if meta.size is not None and have > meta.size:
            out.truncate(0)
            have = 0
        if have:
            meter.add(have, resumed=True)
        tries = RETRIES
        while meta.size is None or have < meta.size:
            meter.check()
            ask = dict(headers, Range=f"bytes={have}-") if have else headers
            before = have
            try:
                with http_stream_backoff("GET", location, headers=ask,
                                         retry_on_exceptions=(), retry_on_status_codes=(408, 429),
                                         timeout=HTTP_TIMEOUT) as response:
                    hf_raise_for_status(response)
                    if have and response.status_code == 200:  # the Range was ignored: start over
                        meter.add(-have, resumed=True)
                        out.truncate(0)
                        have = 0
                    for chunk in response.iter_bytes():
                        meter.check()
                        out.write(chunk)
                        out.flush()
                        have += len(chunk)
                        meter.add(len(chunk))
                if meta.size is None:
                    break
            except httpx2.TransportError:
                tries = RETRIES if have > before else tries - 1
                if tries <= 0:
                    raise
                time.sleep(RETRY_WAIT)
    if meta.size is not None and partial.stat().st_size != meta.size:
        raise DownloadError(f"{filename} arrived with {partial.stat().st_size} bytes of "
                            f"{meta.size}: download it again")
    if sha256:
        verify_sha256(partial, sha256, filename)
    os.replace(partial, blob)


HTTP_TIMEOUT = 30.0  # seconds without a byte before a read counts as a dropped connection
RETRY_WAIT = 0.5  # seconds between reconnections


def download(choice: Choice, *, token: str | None = None,
             on_progress: Callable[[Progress], None] | None = None,
             cancel: threading.Event | None = None) -> Path:
    """Download ``choice`` into the Hugging Face cache; the GGUF file or the model folder.

    A download that is cancelled, cut off, or interrupted by quitting the app keeps its
    partial file in the cache; the next download of the same choice resumes from it.
    """
    from huggingface_hub import hf_hub_download, snapshot_download

    meter = _Meter(choice.size or None, on_progress, cancel)
    token = token or stored_token()
    common: dict[str, Any] = {"repo_id": choice.repo_id, "cache_dir": str(cache_dir()),
                              "endpoint": hub_endpoint(), "token": token}
    try:
        if choice.filename is None:
            info = _api(token).model_info(choice.repo_id, files_metadata=True)
            for s in info.siblings or []:
                if any(fnmatch(s.rfilename, p) for p in FOLDER_PATTERNS):
                    _fetch_blob(choice.repo_id, s.rfilename, info.sha or "main", token,
                                s.lfs.sha256 if s.lfs else None, meter)
            return Path(snapshot_download(allow_patterns=FOLDER_PATTERNS,
                                          revision=info.sha, **common))
        _fetch_blob(choice.repo_id, choice.filename, "main", token, choice.sha256, meter)
        return Path(hf_hub_download(filename=choice.filename, **common))
    except DownloadError:
        raise
    except Exception as exc:
        raise _friendly(exc, choice.repo_id) from exc


def verify_sha256(path: Path, expected: str, name: str | None = None) -> None:
    """Raise :class:`DownloadError` (and remove ``path``) when its SHA-256 is not ``expected``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != expected.lower():
        path.unlink(missing_ok=True)
        raise DownloadError(f"{name or path.name} is corrupt (SHA-256 {digest.hexdigest()[:12]}…, "
                            f"the Hub says {expected[:12]}…); it was removed: download it again.")
