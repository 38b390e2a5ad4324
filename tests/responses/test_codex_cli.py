"""The real Codex CLI (``@openai/codex``, pinned in dev.sh) against this app's real server.

Codex speaks only the Responses API.  It runs non-interactively (``codex exec``) under a
temporary HOME with the provider block the README gives, against the server on a scripted tiny
model (:mod:`app.tinymodels.scripted`: a real BPE vocabulary, so Codex's ~40 KB prompt is ~16k
tokens, and a greedy output that follows a script).  The context size is set on the model row
exactly as ``tater serve --context-size`` sets it.  What Codex sent is read back from the
server's request log.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import LiveServer, start_live_server

CODEX_VERSION = "0.171.0"
CODEX = (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tater-desktop" / "npm"
         / f"codex-{CODEX_VERSION}" / "node_modules" / ".bin" / "codex")
CONTEXT = 65536
MARKER = "tater-tool-ok"
CALL = ('<tool_call>\n{"name": "exec_command", "arguments": {"cmd": "echo ' + MARKER + '"}}\n'
        "</tool_call>")
ANSWER_AFTER_TOOL = "The command printed its line."


@dataclass
class CodexRun:
    live: LiveServer
    result: subprocess.CompletedProcess[str]


def codex_binary() -> Path:
    """The pinned Codex CLI, installed by ``./dev.sh setup test`` (a missing one fails the test)."""
    if not CODEX.exists():
        pytest.fail(f"Codex CLI {CODEX_VERSION} is not installed at {CODEX}: run `./dev.sh setup test` "
                    f"(it runs `npm install @openai/codex@{CODEX_VERSION}` into that folder).")
    return CODEX


def write_codex_config(home: Path, base_url: str) -> Path:
    """``$HOME/.codex/config.toml`` pointing Codex at this server (the README's block)."""
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    (codex_home / "config.toml").write_text(
        'model = "tater/base"\n'
        'model_provider = "tater"\n\n'
        "[model_providers.tater]\n"
        'name = "Tater"\n'
        f'base_url = "{base_url}"\n'
        'env_key = "TATER_API_KEY"\n'
        'wire_api = "responses"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n")
    return codex_home


def run_codex(live: LiveServer, workdir: Path, prompt: str) -> subprocess.CompletedProcess[str]:
    home = workdir / "home"
    codex_home = write_codex_config(home, live.base_url)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(codex_home),
           "TATER_API_KEY": live.key, "NO_COLOR": "1"}
    return subprocess.run([str(codex_binary()), "exec", "--skip-git-repo-check", "-m", "tater/base",
                           prompt], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=240, stdin=subprocess.DEVNULL)


@pytest.fixture
def scripted_server(clean_env: Path, tmp_path: Path) -> Iterator[LiveServer]:
    from app.cli import with_context_size
    from app.providers.llama_cpp import LlamaCppProvider
    from app.tinymodels.scripted import TOOL_RESULT_TURN, USER_TURN, write_scripted

    files = write_scripted(tmp_path / "scripted", {USER_TURN: CALL, TOOL_RESULT_TURN: ANSWER_AFTER_TOOL},
                           hf=False)
    row = with_context_size(LlamaCppProvider.row_for(str(files.gguf)), CONTEXT)
    live = start_live_server(clean_env, [row], row.id)
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]


def test_codex_runs_a_tool_and_answers(scripted_server: LiveServer, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    result = run_codex(scripted_server, work, "Run the check command, then tell me what it printed.")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.strip().endswith(ANSWER_AFTER_TOOL), result.stdout
    assert MARKER in result.stderr  # Codex shows the command's output in its transcript

    records = [r for r in scripted_server.services.request_log.records()  # type: ignore[attr-defined]
               if r.path == "/v1/responses"]
    assert [(r.method, r.status, r.stream) for r in records] == [("POST", 200, True)] * 2
    assert all("codex" in r.headers.get("User-Agent", "").lower() for r in records)
    first, second = (json.loads(r.body) for r in records)
    assert first["model"] == "tater/base" and first["stream"] is True
    tool_types = {t["type"] for t in first["tools"]}
    assert "function" in tool_types and tool_types - {"function"}  # Codex also sends other types
    assert "exec_command" in {t.get("name") for t in first["tools"]}
    assert records[0].prompt_tokens > 8000  # Codex's real prompt, not a stub
    assert records[0].completion_tokens > 0

    # the follow-up carries the call this server returned and the output Codex produced for it
    calls = [i for i in second["input"] if i.get("type") == "function_call"]
    outputs = [i for i in second["input"] if i.get("type") == "function_call_output"]
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("exec_command", {"cmd": f"echo {MARKER}"})]
    assert outputs[0]["call_id"] == calls[0]["call_id"] and MARKER in outputs[0]["output"]
