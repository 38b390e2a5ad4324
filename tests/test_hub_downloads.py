# ruff: noqa: F811 - pytest fixtures are imported by name
"""Search and download through the real ``huggingface_hub`` client against a stand-in Hub:
sizes, progress, a dropped connection resumed, checksums, gated repositories, cancellation,
then the downloaded model becomes the active row and chats through the real server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.disk_models import scan_hf_cache
from app.hub_downloads import (
    PARTIAL_SUFFIX,
    Choice,
    DownloadCancelled,
    DownloadError,
    Progress,
    TokenNeeded,
    cache_dir,
    download,
    list_choices,
    partial_bytes,
    search,
    set_token,
)
from app.model_sources import add_row, row_for_download
from app.settings import SettingsStore
from tests.conftest import start_live_server
from tests.hub_standin import (  # noqa: F401 - the hub fixture
    FOLDER_REPO,
    GATED_REPO,
    GATED_TOKEN,
    GGUF_REPO,
    PLENTY,
    HubStandIn,
    hub,
)


def test_search_finds_repositories_for_each_runtime(hub: HubStandIn) -> None:
    assert [h.repo_id for h in search("tiny", "llama_cpp")] == [GGUF_REPO]
    assert [h.repo_id for h in search("", "llama_cpp")] == [GGUF_REPO, GATED_REPO]
    assert [h.repo_id for h in search("llama", "hf_transformers")] == [FOLDER_REPO]
    assert search("gated", "llama_cpp")[0].gated
    with pytest.raises(DownloadError, match="unknown runtime"):
        search("x", "warp_drive")


def test_choices_have_sizes_checksums_and_say_what_fits(hub: HubStandIn, tiny_gguf: Path) -> None:
    size = tiny_gguf.stat().st_size
    choices = list_choices(GGUF_REPO, available=PLENTY)
    assert [(c.filename, c.size, c.fits) for c in choices] == [
        ("tiny-chat-Q8_0.gguf", size, True), ("tiny-chat-F32.gguf", size + 4096, True)]
    assert all(c.sha256 and len(c.sha256) == 64 for c in choices)
    assert not any(c.fits for c in list_choices(GGUF_REPO, available=size))
    (folder,) = list_choices(FOLDER_REPO, available=PLENTY)
    assert folder.filename is None and folder.runtime == "hf_transformers" and folder.size > 0
    with pytest.raises(DownloadError, match="not found on the Hub"):
        list_choices("tater-tests/nothing-here")


def test_dropped_download_resumes_verifies_becomes_active_and_chats(
        hub: HubStandIn, tiny_gguf: Path, clean_env: Path) -> None:
    choice = list_choices(GGUF_REPO, available=PLENTY)[0]
    hub.drop_once.add(f"{GGUF_REPO}/{choice.filename}")
    seen: list[Progress] = []
    path = download(choice, on_progress=seen.append)
    assert path.read_bytes() == tiny_gguf.read_bytes()
    gets = [s for s in hub.seen if s.method == "GET" and s.path.endswith(choice.filename)]
    assert [g.range for g in gets] == [None, f"bytes={choice.size // 2}-"]  # resumed, not restarted
    assert seen[-1].done == choice.size and seen[-1].total == choice.size
    assert seen[-1].eta == 0 and all(p.speed > 0 for p in seen)
    assert [m.name for m in scan_hf_cache(cache_dir())] == [
        f"{GGUF_REPO}/{choice.filename}"]

    store = SettingsStore(clean_env, env={})
    row = add_row(store, row_for_download(choice, path))
    assert store.saved.active_model == row.id == f"llama_cpp::{GGUF_REPO}::{choice.filename}"
    live = start_live_server(clean_env, store.saved.models, store.saved.active_model)
    try:
        reply = live.client().chat.completions.create(
            model="tater/base", messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
        assert reply.usage.completion_tokens == 3 and reply.choices[0].message.content
    finally:
        live.services.shutdown()  # type: ignore[attr-defined]


def test_gated_repository_says_what_to_do_and_works_with_a_stored_token(hub: HubStandIn) -> None:
    (choice,) = list_choices(GATED_REPO, available=PLENTY)
    with pytest.raises(DownloadError) as err:
        download(choice)
    message = str(err.value)
    assert isinstance(err.value, TokenNeeded) and hub.seen[-1].authorization is None
    assert "gated" in message and f"{GATED_REPO}" in message and "token" in message
    set_token("hf_someone_without_access")
    with pytest.raises(TokenNeeded, match="has no access to it") as err:  # the Hub's 403
        download(choice)
    assert f"{os.environ['HF_ENDPOINT']}/{GATED_REPO}" in str(err.value)
    set_token(GATED_TOKEN)
    assert download(choice).is_file()
    assert hub.seen[-1].authorization == f"Bearer {GATED_TOKEN}"


def test_cancel_keeps_the_partial_file_and_a_wrong_checksum_is_refused(hub: HubStandIn) -> None:
    choice = list_choices(GGUF_REPO, available=PLENTY)[1]
    cancel = threading.Event()
    with pytest.raises(DownloadCancelled):
        download(choice, on_progress=lambda p: cancel.set(), cancel=cancel)
    (partial,) = [p for p in cache_dir().rglob(f"*{PARTIAL_SUFFIX}") if p.is_file()]
    assert 0 < partial.stat().st_size < choice.size
    assert partial_bytes(choice) == partial.stat().st_size  # what the Models page shows
    assert not list(cache_dir().rglob(choice.filename or ""))  # not in the snapshot yet
    bad = Choice(choice.repo_id, choice.filename, choice.size, "llama_cpp", True, "0" * 64)
    with pytest.raises(DownloadError, match="corrupt"):
        download(bad)  # resumes the partial file, then refuses the result
    assert not list(cache_dir().rglob(choice.filename or ""))
    assert not partial.exists() and not partial.with_name(partial.name[:-len(PARTIAL_SUFFIX)]).exists()


def test_a_model_folder_downloads_whole(hub: HubStandIn, tiny_hf_folder: Path) -> None:
    (choice,) = list_choices(FOLDER_REPO, available=PLENTY)
    sizes: list[int] = []
    folder = download(choice, on_progress=lambda p: sizes.append(p.done))
    assert (folder / "config.json").read_bytes() == (tiny_hf_folder / "config.json").read_bytes()
    assert (folder / "model.safetensors").is_file()
    assert sizes and sizes[-1] == choice.size
    assert row_for_download(choice, folder).source == FOLDER_REPO


def test_offline_mode_is_named_as_the_reason(hub: HubStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DownloadError, match="offline mode is on"):
        search("tiny")


def test_a_download_killed_with_the_app_resumes_after_a_restart(
        hub: HubStandIn, tiny_gguf: Path, clean_env: Path) -> None:
    """``tater models pull`` is killed (SIGKILL) mid-file; a fresh download in another process
    asks only for the missing bytes, checks the whole file, and the model chats."""
    choice = list_choices(GGUF_REPO, available=PLENTY)[0]
    hub.throttle = 0.25  # 64 KiB every quarter second: the kill lands mid-file
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), HF_HUB_OFFLINE="0")
    pull = subprocess.Popen([sys.executable, "-m", "app", "models", "pull", GGUF_REPO,
                             "--file", choice.filename or ""], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        partial: list[Path] = []
        while time.monotonic() < deadline and pull.poll() is None:
            partial = list(cache_dir().rglob(f"*{PARTIAL_SUFFIX}"))
            if partial and partial[0].stat().st_size >= 2 * 64 * 1024:
                break
            time.sleep(0.05)
        assert pull.poll() is None, pull.stderr.read().decode() if pull.stderr else ""
    finally:
        pull.kill()
        pull.wait(10)
    (partial_file,) = partial
    kept = partial_file.stat().st_size
    assert 0 < kept < choice.size
    assert not SettingsStore(clean_env, env={}).saved.models  # nothing half-added

    hub.throttle = 0.0
    hub.seen.clear()
    path = download(choice)  # "after the restart": only the files on disk carry over
    assert path.read_bytes() == tiny_gguf.read_bytes() and not partial_file.exists()
    gets = [s for s in hub.seen if s.method == "GET" and s.path.endswith(choice.filename or "")]
    assert [g.range for g in gets] == [f"bytes={kept}-"]
    store = SettingsStore(clean_env, env={})
    row = add_row(store, row_for_download(choice, path))
    assert store.saved.active_model == row.id
    live = start_live_server(clean_env, store.saved.models, store.saved.active_model)
    try:
        reply = live.client().chat.completions.create(
            model="tater/base", messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
        assert reply.usage.completion_tokens == 3
    finally:
        live.services.shutdown()  # type: ignore[attr-defined]


def test_recommended_models_are_runnable_gguf_files_and_resolve_on_the_hub(
        hub: HubStandIn, tiny_gguf: Path) -> None:
    from app.disk_models import is_chat_gguf_name
    from app.recommended_models import RECOMMENDED, choice_for
    from tests.hub_standin import Repo

    assert 3 <= len(RECOMMENDED) <= 8 and len({m.repo_id for m in RECOMMENDED}) == len(RECOMMENDED)
    for model in RECOMMENDED:
        assert is_chat_gguf_name(model.filename) and 100 << 20 < model.size < 4 << 30
        assert model.good_at and "/" in model.repo_id
    first = RECOMMENDED[0]
    hub.repos[first.repo_id] = Repo(first.repo_id, {first.filename: tiny_gguf.read_bytes()},
                                    tags=["gguf"])
    choice = choice_for(first, available=PLENTY)
    assert (choice.filename, choice.size) == (first.filename, tiny_gguf.stat().st_size)
    assert choice.sha256 and choice.fits
    hub.repos[first.repo_id].files = {"renamed-q4_k_m.gguf": tiny_gguf.read_bytes()}
    with pytest.raises(DownloadError, match="no longer has"):
        choice_for(first, available=PLENTY)
