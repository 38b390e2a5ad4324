"""Models other apps keep on disk (Ollama's store, LM Studio's folder, user folders) are found
with the names those apps use, added as rows, and chat through the real server."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.disk_models import (
    DiskRoots,
    default_roots,
    is_chat_gguf_name,
    ollama_name,
    scan,
    scan_ollama,
)
from app.model_sources import add_row, remove_row, row_for_found
from app.settings import SettingsStore
from tests.conftest import LiveServer, start_live_server


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_ollama_model(models: Path, name: str, tag: str, gguf: bytes, *,
                       namespace: str = "library", registry: str = "registry.ollama.ai") -> Path:
    """Lay out one model as ``ollama pull`` leaves it: blobs by digest, an OCI manifest."""
    blobs = models / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    layers_data = {
        "application/vnd.ollama.image.model": gguf,
        "application/vnd.ollama.image.template": b"{{ .Prompt }}",
        "application/vnd.ollama.image.params": json.dumps({"stop": ["<|im_end|>"]}).encode(),
    }
    config = json.dumps({"model_format": "gguf", "model_family": "llama",
                         "file_type": "F32"}).encode()
    layers = []
    for media, data in [*layers_data.items(), ("config", config)]:
        digest = _digest(data)
        (blobs / digest.replace(":", "-")).write_bytes(data)
        if media != "config":
            layers.append({"mediaType": media, "digest": digest, "size": len(data)})
    manifest = {"schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                           "digest": _digest(config), "size": len(config)},
                "layers": layers}
    path = models / "manifests" / registry / namespace / name / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return blobs / _digest(gguf).replace(":", "-")


@pytest.fixture
def home(tmp_path: Path, tiny_gguf: Path) -> Path:
    """A home folder with an Ollama store (two models), LM Studio's folder, and a user folder."""
    home = tmp_path / "home"
    data = tiny_gguf.read_bytes()
    models = home / ".ollama" / "models"
    write_ollama_model(models, "qwen2.5", "0.5b", data)
    write_ollama_model(models, "tiny", "latest", data[:-7] + b"0123456", namespace="someone")
    lms = home / ".lmstudio" / "models" / "lmstudio-community" / "Tiny-Chat-GGUF"
    lms.mkdir(parents=True)
    shutil.copy(tiny_gguf, lms / "tiny-chat-Q8_0.gguf")
    (lms / "mmproj-tiny-f16.gguf").write_bytes(b"GGUF" + bytes(60))  # a projector: not a chat model
    mine = home / "my-models" / "deep"
    mine.mkdir(parents=True)
    shutil.copy(tiny_gguf, mine / "mine-00001-of-00002.gguf")
    (mine / "mine-00002-of-00002.gguf").write_bytes(b"GGUF" + bytes(60))
    (mine / "notes.gguf").write_bytes(b"not a gguf at all")
    return home


def _roots(home: Path) -> DiskRoots:
    return default_roots(home=home, env={"HF_HUB_CACHE": str(home / "no-cache")},
                         folders=[home / "my-models"])


def test_ollama_names_follow_ollama() -> None:
    assert ollama_name("registry.ollama.ai", "library", "qwen2.5", "0.5b") == "qwen2.5:0.5b"
    assert ollama_name("registry.ollama.ai", "someone", "tiny", "latest") == "someone/tiny:latest"
    assert ollama_name("hf.co", "bartowski", "Llama-GGUF", "Q4_K_M") == "hf.co/bartowski/Llama-GGUF:Q4_K_M"


def test_only_whole_chat_models_count() -> None:
    assert is_chat_gguf_name("model-Q4_K_M.gguf")
    assert is_chat_gguf_name("big-00001-of-00003.gguf")
    assert not is_chat_gguf_name("big-00002-of-00003.gguf")
    assert not is_chat_gguf_name("mmproj-model-f16.gguf")
    assert not is_chat_gguf_name("model.safetensors")


def test_scan_finds_each_model_once_with_its_apps_name(home: Path, tiny_gguf: Path) -> None:
    found = scan(_roots(home))
    names = sorted((m.origin, m.name) for m in found)
    assert names == [
        ("folder", "mine-00001-of-00002.gguf"),
        ("lmstudio", "lmstudio-community/Tiny-Chat-GGUF/tiny-chat-Q8_0.gguf"),
        ("ollama", "qwen2.5:0.5b"),
        ("ollama", "someone/tiny:latest"),
    ]
    ollama = next(m for m in found if m.name == "qwen2.5:0.5b")
    assert ollama.path.name == _digest(tiny_gguf.read_bytes()).replace(":", "-")
    assert ollama.size == tiny_gguf.stat().st_size and ollama.provider == "llama_cpp"
    assert ollama.label == "qwen2.5:0.5b (Ollama)"


def test_ollama_store_moved_by_env_and_broken_manifests_are_skipped(tmp_path: Path,
                                                                    tiny_gguf: Path) -> None:
    store = tmp_path / "elsewhere"
    write_ollama_model(store, "good", "1b", tiny_gguf.read_bytes())
    bad = store / "manifests" / "registry.ollama.ai" / "library" / "bad" / "latest"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    missing = store / "manifests" / "registry.ollama.ai" / "library" / "gone" / "latest"
    missing.parent.mkdir(parents=True)
    missing.write_text(json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.model",
                                               "digest": "sha256:" + "0" * 64}]}))
    roots = default_roots(home=tmp_path / "nobody", env={"OLLAMA_MODELS": str(store)})
    assert roots.ollama[0] == store
    assert [m.name for m in scan_ollama(store)] == ["good:1b"]


def test_rows_are_added_once_first_becomes_active_and_removal_keeps_files(home: Path,
                                                                           clean_env: Path) -> None:
    store = SettingsStore(clean_env, env={})
    found = {m.name: m for m in scan(_roots(home))}
    first = add_row(store, row_for_found(found["qwen2.5:0.5b"]))
    assert first.id == "llama_cpp::ollama::qwen2.5:0.5b"
    assert store.saved.active_model == first.id
    second = add_row(store, row_for_found(found["someone/tiny:latest"]))
    assert store.saved.active_model == first.id  # only the first becomes active on its own
    assert add_row(store, row_for_found(found["qwen2.5:0.5b"])) == first
    assert [r.id for r in store.saved.models] == [first.id, second.id]
    remove_row(store, first.id)
    assert store.saved.active_model is None and found["qwen2.5:0.5b"].path.is_file()


@pytest.fixture
def disk_server(home: Path, clean_env: Path) -> Iterator[tuple[LiveServer, list[str]]]:
    rows = [row_for_found(m) for m in scan(_roots(home))]
    live = start_live_server(clean_env, rows, rows[0].id)
    yield live, [r.id for r in rows]
    live.services.shutdown()  # type: ignore[attr-defined]


def test_every_discovered_model_chats_through_the_real_server(disk_server) -> None:
    live, ids = disk_server
    client = live.client()
    listed = {m.id for m in client.models.list().data}
    assert set(ids) <= listed
    for model_id in ids:
        reply = client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": "Hello there"}], max_tokens=4)
        assert reply.choices[0].message.content, model_id
        assert reply.usage.completion_tokens == 4 and reply.usage.prompt_tokens > 0
