"""The real Claude Code CLI against the real server and llama.cpp, on scripted tiny models.

Claude Code (pinned; ``./dev.sh test`` installs it into the npm cache folder) runs
non-interactively (``claude -p``) against a live server whose active model is a scripted tiny GGUF
(:mod:`app.tinymodels.scripted`: greedy output follows a chosen script whatever the prompt), with
the context size set as ``tater serve --context-size`` sets it.  The requests it made are read back
from the request log.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer, start_live_server

CLAUDE_CODE_VERSION = "2.1.197"
NPM_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tater-desktop" / "npm"
CLAUDE = NPM_CACHE / f"claude-code-{CLAUDE_CODE_VERSION}" / "node_modules" / ".bin" / "claude"
CONTEXT_SIZE = 32768

HELLO = "Hi from Tater, the local model."
TOOL_CALL = ('<tool_call>\n{"name": "Bash", "arguments": {"command": "echo tater-tool-ok", '
             '"description": "Print a marker word"}}\n</tool_call>')
AFTER_TOOL = "The command printed the marker word."


def claude_cli() -> Path:
    """The pinned CLI; its absence fails the test (it is part of the test setup, never skipped)."""
    if not CLAUDE.exists():
        pytest.fail(f"Claude Code {CLAUDE_CODE_VERSION} is not installed at {CLAUDE}: run "
                    "`./dev.sh setup test` (it installs it from npm into that cache folder)")
    return CLAUDE


def run_claude(live: LiveServer, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``claude -p`` with a throw-away HOME, pointed at ``live`` (the README's set-up)."""
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "ANTHROPIC_BASE_URL": live.root,
           "ANTHROPIC_AUTH_TOKEN": live.key, "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    return subprocess.run([str(claude_cli()), "-p", *args], env=env, cwd=home, capture_output=True,
                          text=True, timeout=150)


def scripted_server(clean_env: Path, folder: Path, scripts: dict[str, str], runtime: str = "llama_cpp",
                    context_size: int = CONTEXT_SIZE) -> LiveServer:
    """A live server whose active model is a scripted tiny model on ``runtime``, its context set
    the way ``tater serve --context-size`` sets it."""
    from app.cli import with_context_size
    from app.providers import provider_class
    from app.tinymodels.scripted import write_scripted

    gguf = runtime == "llama_cpp"
    files = write_scripted(folder, scripts, gguf=gguf, hf=not gguf)
    source = files.gguf if gguf else files.hf
    row = with_context_size(provider_class(runtime).row_for(str(source)), context_size)
    return start_live_server(clean_env, [row], row.id)


@pytest.fixture
def hello_server(clean_env: Path, tmp_path: Path) -> Iterator[LiveServer]:
    from app.tinymodels.scripted import USER_TURN

    live = scripted_server(clean_env, tmp_path / "hello", {USER_TURN: HELLO})
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]


@pytest.fixture
def tool_server(clean_env: Path, tmp_path: Path) -> Iterator[LiveServer]:
    from app.tinymodels.scripted import TOOL_RESULT_TURN, USER_TURN

    live = scripted_server(clean_env, tmp_path / "tool", {USER_TURN: TOOL_CALL, TOOL_RESULT_TURN: AFTER_TOOL})
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]


@pytest.fixture
def hello_transformers(clean_env: Path, tmp_path: Path) -> Iterator[LiveServer]:
    from app.tinymodels.scripted import USER_TURN

    live = scripted_server(clean_env, tmp_path / "hello-hf", {USER_TURN: HELLO}, "hf_transformers", 65536)
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]


def messages_records(live: LiveServer) -> list:
    return [r for r in live.services.request_log.records() if r.path == "/v1/messages"]  # type: ignore[attr-defined]


def test_one_turn_with_claude_code(hello_server: LiveServer, tmp_path: Path) -> None:
    """No ``--model``: Claude Code asks for its own ``claude-…`` model, which maps to the active one."""
    home = tmp_path / "home"
    home.mkdir()
    done = run_claude(hello_server, home, "say hi", "--tools", "")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == HELLO
    records = messages_records(hello_server)
    assert len(records) == 1
    rec = records[0]
    assert rec.method == "POST" and rec.status == 200 and rec.stream
    assert rec.model == hello_server.settings.current.active_model
    assert rec.headers["User-Agent"].startswith(f"claude-cli/{CLAUDE_CODE_VERSION}")
    assert rec.completion_tokens > 0 and rec.prompt_tokens > 1000  # Claude Code's long system prompt
    body = json.loads(rec.body)
    assert body["model"].startswith("claude-") and body["stream"] is True
    assert body["system"][0]["text"].startswith("x-anthropic-billing-header:")


def test_tool_round_trip_with_claude_code(tool_server: LiveServer, tmp_path: Path) -> None:
    """The model calls Bash; Claude Code runs it, sends the result back, and the model answers."""
    home = tmp_path / "home"
    home.mkdir()
    done = run_claude(tool_server, home, "run the marker command", "--model", "tater/base",
                      "--tools", "Bash", "--allowedTools", "Bash")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == AFTER_TOOL
    first, second = messages_records(tool_server)
    assert first.status == second.status == 200
    assert [t["name"] for t in json.loads(first.body)["tools"]] == ["Bash"]
    turns = json.loads(second.body)["messages"]
    call = next(b for b in turns[-2]["content"] if b["type"] == "tool_use")
    assert call["name"] == "Bash" and call["id"].startswith("toolu_")
    assert call["input"]["command"] == "echo tater-tool-ok"
    result = next(b for b in turns[-1]["content"] if b["type"] == "tool_result")
    assert result["tool_use_id"] == call["id"]
    content = result["content"]
    text = content if isinstance(content, str) else " ".join(b.get("text", "") for b in content)
    assert "tater-tool-ok" in text  # the command really ran

    # The billing line changes between requests; the rendered prompts still share their prefix.
    prompts = [rendered_prompt(tool_server, rec.body) for rec in (first, second)]
    assert "x-anthropic-billing-header" not in prompts[0]
    assert prompts[1].startswith(prompts[0])


def rendered_prompt(live: LiveServer, body: str) -> str:
    """The prompt text the model saw for a logged ``/v1/messages`` body."""
    from app.server.messages_request import chat_request
    from app.server.protocol_messages import MessagesRequest

    request = chat_request(MessagesRequest.model_validate_json(body))
    model = live.services.hub.load(live.settings.current.active_model).result()  # type: ignore[attr-defined]
    prompt, _ = model.render_prompt(request.messages, request.tools)
    return prompt


def test_one_turn_with_every_tool_on_transformers(hello_transformers: LiveServer, tmp_path: Path) -> None:
    """Claude Code's whole default tool set (~45k tokens of prompt, schemas with ``minimum``,
    ``anyOf``, ``propertyNames`` …) is accepted by the llguidance path."""
    home = tmp_path / "home"
    home.mkdir()
    done = run_claude(hello_transformers, home, "say hi")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == HELLO
    (rec,) = messages_records(hello_transformers)
    assert rec.status == 200 and rec.prompt_tokens > 20000
    assert rec.model == hello_transformers.settings.current.active_model


def test_one_turn_against_tater_serve(tmp_path: Path) -> None:
    """The real ``tater serve --context-size`` process; its access log shows what Claude Code sent."""
    import socket
    import sys

    from app.tinymodels.scripted import USER_TURN, write_scripted

    files = write_scripted(tmp_path / "model", {USER_TURN: HELLO}, hf=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key = "tater-" + "cd" * 32
    logs = tmp_path / "logs"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TATER_")}
    env.update(TATER_CONFIG_DIR=str(tmp_path / "cfg"), TATER_LOG_DIR=str(logs), TATER_OPENAI_API_KEY=key,
               PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring", PYTHONUNBUFFERED="1")
    root = Path(__file__).resolve().parents[2]
    serve = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port), "--model",
                              str(files.gguf), "--context-size", str(CONTEXT_SIZE)],
                             cwd=root, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = serve.stdout.readline()  # type: ignore[union-attr]
        assert f"serving at http://127.0.0.1:{port}/v1" in line, line + serve.stderr.read()  # type: ignore[union-attr]
        home = tmp_path / "home"
        home.mkdir()
        live = LiveServer(services=None, base_url=f"http://127.0.0.1:{port}/v1", key=key)
        done = run_claude(live, home, "say hi", "--tools", "")
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.strip() == HELLO
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    access = [ln for p in logs.glob("*.log") for ln in p.read_text().splitlines() if "tater.access" in ln]
    assert any('"HEAD / ' in ln and '" 200 ' in ln for ln in access), access
    posts = [ln for ln in access if '"POST /v1/messages ' in ln]  # (the log leaves out ?beta=true)
    assert len(posts) == 1 and '" 200 ' in posts[0], access
