# ruff: noqa: F811 - pytest fixtures are imported by name
"""``tater models …`` against the stand-in Hub and a home folder with other apps' models, and
``tater serve --context-size`` as a real process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from app.cli import build_parser
from app.hub_downloads import stored_token
from app.models_cli import run
from app.settings import SettingsStore
from tests.conftest import free_port, process_env
from tests.hub_standin import GATED_REPO, GATED_TOKEN, GGUF_REPO, HubStandIn, hub  # noqa: F401
from tests.test_disk_models import write_ollama_model

ROOT = Path(__file__).resolve().parents[1]
KEY = "tater-" + "cd" * 32




def tater_models(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(build_parser().parse_args(["models", *argv]), out, err)
    return code, out.getvalue(), err.getvalue()


def test_search_pull_list_rm(hub: HubStandIn, clean_env: Path, tiny_gguf: Path) -> None:
    code, out, _ = tater_models("search", "tiny")
    assert code == 0 and out.split("\t")[0] == GGUF_REPO
    code, out, err = tater_models("pull", f"{GGUF_REPO}:Q8_0")
    first = f"llama_cpp::{GGUF_REPO}::tiny-chat-Q8_0.gguf"
    assert (code, out.strip()) == (0, f"{first} (active)"), err
    code, out, err = tater_models("pull", GGUF_REPO)  # no choice: the largest that fits
    assert (code, out.strip()) == (0, f"llama_cpp::{GGUF_REPO}::tiny-chat-F32.gguf"), err
    code, out, _ = tater_models("list")
    assert out.splitlines()[0].startswith(f"* {first}\tllama_cpp\t")
    assert len(out.splitlines()) == 2
    assert tater_models("rm", first)[0] == 0
    assert SettingsStore(clean_env, env={}).saved.active_model is None
    code, _, err = tater_models("pull", f"{GGUF_REPO}:Q2_K")
    assert code == 1 and "no Q2_K file here" in err and "tiny-chat-Q8_0.gguf" in err
    code, _, err = tater_models("rm", "nope")
    assert code == 1 and "No configured model" in err


def test_gated_pull_needs_the_token_from_the_keyring(hub: HubStandIn, clean_env: Path) -> None:
    code, _, err = tater_models("pull", GATED_REPO)
    assert code == 1 and "gated" in err and "tater models token set" in err
    assert tater_models("token", "set", GATED_TOKEN)[0] == 0
    assert stored_token() == GATED_TOKEN
    code, out, err = tater_models("pull", GATED_REPO)
    assert code == 0 and "gated-Q4_0.gguf (active)" in out, err
    assert tater_models("token", "clear")[0] == 0 and stored_token() is None


def test_scan_lists_and_adds_what_other_apps_keep(tmp_path: Path, tiny_gguf: Path, clean_env: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    write_ollama_model(home / ".ollama" / "models", "qwen2.5", "0.5b", tiny_gguf.read_bytes())
    extra = tmp_path / "mine"
    extra.mkdir()
    (extra / "solo.gguf").write_bytes(tiny_gguf.read_bytes())
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    code, out, _ = tater_models("scan", str(extra))
    assert code == 0
    assert [line.split("\t")[0] for line in out.splitlines()] == ["qwen2.5:0.5b", "solo.gguf"]
    code, out, _ = tater_models("add", "qwen2.5:0.5b")
    assert out.strip() == "llama_cpp::ollama::qwen2.5:0.5b (active)"
    assert tater_models("scan", str(extra), "--add")[0] == 0
    assert len(SettingsStore(clean_env, env={}).saved.models) == 2
    code, _, err = tater_models("add", "no-such-model:1b")
    assert code == 2 and "tater models scan" in err


def test_list_shows_each_local_models_footprint(clean_env: Path, tiny_gguf: Path,
                                                tiny_hf_folder: Path) -> None:
    from app.memory_estimate import estimate_row
    from app.providers.hf_transformers import TransformersProvider
    from app.providers.llama_cpp import LlamaCppProvider
    from app.providers.mlx_lm import MlxProvider

    rows = [LlamaCppProvider.row_for(str(tiny_gguf)),
            TransformersProvider.row_for(str(tiny_hf_folder), parallel=4, context_size=512),
            MlxProvider.row_for(str(tiny_hf_folder), parallel=2),
            MlxProvider.row_for("nobody/not-downloaded")]
    SettingsStore(clean_env, env={}).update(models=rows)
    code, out, _ = tater_models("list")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4
    for row, line in zip(rows[:3], lines, strict=False):
        estimate = estimate_row(row)
        assert estimate is not None and line.endswith(f"\tneeds ≈ {estimate.describe()}")
    assert "x 4 slots" in lines[1] and "for 512 tokens" in lines[1] and "x 2 slots" in lines[2]
    assert lines[3].endswith("\tnobody/not-downloaded")  # not here: nothing to read, no guess


def test_models_list_as_a_process(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "app", "models", "list"], cwd=ROOT, text=True,
                          env=process_env(tmp_path / "cfg"), capture_output=True, timeout=60)
    assert proc.returncode == 0 and "No models yet" in proc.stderr


def test_serve_context_size_sets_the_models_context(tmp_path: Path, tiny_gguf: Path) -> None:
    port = free_port()
    cfg = tmp_path / "cfg"
    proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port), "--model",
                             str(tiny_gguf), "--context-size", "256"], cwd=ROOT, text=True,
                            env=process_env(cfg, TATER_OPENAI_API_KEY=KEY),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert "serving at" in line, line + proc.stderr.read()  # type: ignore[union-attr]
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
        ok = client.chat.completions.create(model="tater/base", max_tokens=2,
                                            messages=[{"role": "user", "content": "hi"}])
        assert ok.usage.completion_tokens == 2
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="tater/base", max_tokens=2,
                                           messages=[{"role": "user", "content": "word " * 400}])
        assert "256" in str(err.value)
    finally:
        proc.terminate()
        proc.wait(30)
    saved = json.loads((cfg / "settings.json").read_text())
    assert saved["models"][0]["options"]["n_ctx"] == 256  # kept on the row
