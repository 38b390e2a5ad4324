"""Models already on disk: the Hugging Face cache, LM Studio, Ollama, and folders the user adds.

Nothing is copied or converted: every find points at the file or folder as the other app
keeps it, so Tater can run it as it is.

* **Ollama** keeps ``models/manifests/<registry>/<namespace>/<model>/<tag>`` (OCI manifests,
  JSON) and ``models/blobs/sha256-<hex>``.  The manifest layer with media type
  ``application/vnd.ollama.image.model`` is the GGUF file.  Names follow Ollama: the default
  registry and ``library`` namespace are dropped (``qwen2.5:0.5b``), other namespaces stay
  (``someone/model:tag``).  ``$OLLAMA_MODELS`` moves the store.
* **LM Studio** keeps ``<models folder>/<publisher>/<repo>/<file>.gguf`` (``~/.lmstudio/models``,
  formerly ``~/.cache/lm-studio/models``); named ``publisher/repo/file.gguf`` as LM Studio
  shows them.
* **Hugging Face cache** (``scan_cache_dir``): GGUF files in model repositories, and
  repositories with a ``config.json`` and safetensors weights (Transformers / MLX).
* **Folders** (``Settings.model_folders``, ``tater models scan DIR``): GGUF files and model
  folders below them.

Vision projectors (``mmproj*.gguf``) and the later parts of split GGUF files are skipped: they
are not chat models on their own.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_DEFAULT_REGISTRY = "registry.ollama.ai"
OLLAMA_DEFAULT_NAMESPACE = "library"
GGUF_MAGIC = b"GGUF"
_LATER_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_MAX_DEPTH = 6  # how deep a user folder is searched


@dataclass(frozen=True)
class FoundModel:
    """One model on disk: where it came from, what it is called there, and where it is."""

    origin: str  # "ollama" | "lmstudio" | "hf_cache" | "folder"
    name: str  # as the other app names it, e.g. "qwen2.5:0.5b"
    path: Path  # the GGUF file, or the model folder
    provider: str  # "llama_cpp" | "hf_transformers" | "mlx_lm"
    size: int  # bytes on disk
    repo_id: str | None = None  # Hugging Face cache: the repository

    @property
    def label(self) -> str:
        """What a list shows: the name and where it lives."""
        return f"{self.name} ({ORIGIN_LABELS[self.origin]})"


ORIGIN_LABELS = {"ollama": "Ollama", "lmstudio": "LM Studio", "hf_cache": "Hugging Face cache",
                 "folder": "folder"}


@dataclass
class DiskRoots:
    """Where to look; :func:`default_roots` fills it in for this user."""

    ollama: list[Path] = field(default_factory=list)
    lmstudio: list[Path] = field(default_factory=list)
    hf_cache: Path | None = None
    folders: list[Path] = field(default_factory=list)


def default_roots(home: Path | None = None, env: Mapping[str, str] | None = None,
                  folders: Iterable[str | Path] = ()) -> DiskRoots:
    """The usual places on this machine (environment overrides first), plus ``folders``."""
    env = os.environ if env is None else env
    home = Path(home) if home is not None else Path.home()
    ollama = [Path(env["OLLAMA_MODELS"]).expanduser()] if env.get("OLLAMA_MODELS") else []
    ollama += [home / ".ollama" / "models", Path("/usr/share/ollama/.ollama/models")]
    lmstudio = [*_lmstudio_setting(home), home / ".lmstudio" / "models",
                home / ".cache" / "lm-studio" / "models"]
    hf_home = Path(env.get("HF_HOME") or home / ".cache" / "huggingface").expanduser()
    hf_cache = Path(env.get("HF_HUB_CACHE") or hf_home / "hub").expanduser()
    return DiskRoots(ollama=_unique(ollama), lmstudio=_unique(lmstudio), hf_cache=hf_cache,
                     folders=[Path(f).expanduser() for f in folders])


def _lmstudio_setting(home: Path) -> list[Path]:
    """LM Studio's own ``downloadsFolder`` setting, when the user moved its models folder."""
    try:
        data = json.loads((home / ".lmstudio" / "settings.json").read_text())
        folder = data.get("downloadsFolder")
    except (OSError, ValueError, AttributeError):
        return []
    return [Path(folder).expanduser()] if isinstance(folder, str) and folder else []


def _unique(paths: list[Path]) -> list[Path]:
    return list(dict.fromkeys(paths))


def scan(roots: DiskRoots | None = None) -> list[FoundModel]:
    """Everything found under ``roots`` (default: :func:`default_roots`), each path once."""
    roots = roots or default_roots()
    found: list[FoundModel] = []
    for root in roots.ollama:
        found.extend(scan_ollama(root))
    for root in roots.lmstudio:
        found.extend(scan_lmstudio(root))
    if roots.hf_cache is not None:
        found.extend(scan_hf_cache(roots.hf_cache))
    for folder in roots.folders:
        found.extend(scan_folder(folder))
    seen: set[Path] = set()
    unique = []
    for model in found:
        key = model.path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(model)
    return unique


# -- Ollama ---------------------------------------------------------------------------------

def ollama_name(registry: str, namespace: str, model: str, tag: str) -> str:
    """The name Ollama shows for a manifest path (``qwen2.5:0.5b``, ``ns/model:tag``)."""
    parts = [model]
    if namespace != OLLAMA_DEFAULT_NAMESPACE or registry != OLLAMA_DEFAULT_REGISTRY:
        parts.insert(0, namespace)
    if registry != OLLAMA_DEFAULT_REGISTRY:
        parts.insert(0, registry)
    return "/".join(parts) + f":{tag}"


def scan_ollama(root: Path) -> Iterator[FoundModel]:
    """The models in an Ollama store (``root`` holds ``manifests/`` and ``blobs/``)."""
    manifests = root / "manifests"
    if not manifests.is_dir():
        return
    for manifest in sorted(p for p in manifests.glob("*/*/*/*") if p.is_file()):
        registry, namespace, model, tag = manifest.relative_to(manifests).parts
        blob = _ollama_model_blob(root, manifest)
        if blob is not None:
            yield FoundModel("ollama", ollama_name(registry, namespace, model, tag), blob,
                             "llama_cpp", blob.stat().st_size)


def _ollama_model_blob(root: Path, manifest: Path) -> Path | None:
    try:
        layers = json.loads(manifest.read_text()).get("layers") or []
    except (OSError, ValueError, AttributeError):
        return None
    for layer in layers:
        if isinstance(layer, dict) and layer.get("mediaType") == OLLAMA_MODEL_LAYER:
            digest = str(layer.get("digest") or "")
            blob = root / "blobs" / digest.replace(":", "-")
            return blob if digest and is_gguf(blob) else None
    return None


# -- LM Studio, folders ---------------------------------------------------------------------

def scan_lmstudio(root: Path) -> Iterator[FoundModel]:
    """GGUF files in LM Studio's ``<publisher>/<repo>/`` layout (and model folders there)."""
    for model in scan_folder(root):
        yield FoundModel("lmstudio", model.path.relative_to(root).as_posix(), model.path,
                         model.provider, model.size)


def scan_folder(root: Path) -> Iterator[FoundModel]:
    """GGUF files and Hugging Face-format model folders at most a few levels below ``root``."""
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        depth = len(here.relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if depth < _MAX_DEPTH else []
        if "config.json" in filenames and any(f.endswith(".safetensors") for f in filenames):
            yield FoundModel("folder", here.name, here, folder_provider(), _tree_size(here))
            dirnames[:] = []
            continue
        for name in sorted(filenames):
            path = here / name
            if is_chat_gguf_name(name) and is_gguf(path):
                yield FoundModel("folder", name, path, "llama_cpp", path.stat().st_size)


def is_chat_gguf_name(name: str) -> bool:
    """A ``.gguf`` file that is a model on its own (not a projector, not a later shard)."""
    lower = name.lower()
    if not lower.endswith(".gguf") or lower.startswith("mmproj"):
        return False
    shard = _LATER_SHARD.search(lower)
    return shard is None or int(shard.group(1)) == 1


def is_gguf(path: Path) -> bool:
    """Whether ``path`` is a file that starts with the GGUF magic."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def folder_provider() -> str:
    """The runtime for a Hugging Face-format folder here (MLX on Apple silicon with mlx-lm)."""
    if sys.platform == "darwin" and importlib.util.find_spec("mlx_lm") is not None:
        return "mlx_lm"
    return "hf_transformers"


def _tree_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# -- Hugging Face cache ---------------------------------------------------------------------

def scan_hf_cache(cache_dir: Path) -> Iterator[FoundModel]:
    """GGUF files and whole models in the Hugging Face cache (newest revision of each repo)."""
    if not cache_dir.is_dir():
        return
    try:
        from huggingface_hub import scan_cache_dir
    except ImportError:  # the [hf] extra is not installed: no cache to read
        return
    try:
        info = scan_cache_dir(cache_dir)
    except Exception:  # a cache another tool left half-written
        return
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        revision = max(repo.revisions, key=lambda r: r.last_modified)
        names = {f.file_name: f for f in revision.files}
        ggufs = sorted(f for f in names if is_chat_gguf_name(f))
        for name in ggufs:
            file = names[name]
            inside = file.file_path.relative_to(revision.snapshot_path).as_posix()
            yield FoundModel("hf_cache", f"{repo.repo_id}/{inside}", file.file_path, "llama_cpp",
                             file.size_on_disk, repo.repo_id)
        if "config.json" in names and any(n.endswith(".safetensors") for n in names):
            yield FoundModel("hf_cache", repo.repo_id, revision.snapshot_path, folder_provider(),
                             revision.size_on_disk, repo.repo_id)
