"""The "Connect an app" set-ups: each one is valid for its app, and the runnable ones run."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx

from app import connect
from app.connect import Connection

C = Connection("http://127.0.0.1:8501/v1", "tater-" + "ab" * 32, "llama_cpp::x::tiny chat.gguf")


def run_bash(script: str) -> str:
    """Run ``script`` with bash, the agent CLIs replaced by functions that print what they got."""
    fakes = ('codex() { printf "codex %s\\n" "$*"; printf "key=%s\\n" "$TATER_API_KEY"; }\n'
             'claude() { printf "claude %s\\n" "$*"; printf "url=%s\\ntoken=%s\\n" '
             '"$ANTHROPIC_BASE_URL" "$ANTHROPIC_AUTH_TOKEN"; }\n')
    done = subprocess.run(["bash", "-euc", fakes + script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_codex_config_is_toml_with_a_responses_provider() -> None:
    data = tomllib.loads(connect.codex_config(C))
    assert data["model"] == C.model and data["model_provider"] == "tater"
    provider = data["model_providers"]["tater"]
    assert provider["base_url"] == C.base_url
    assert provider["wire_api"] == "responses"
    assert provider["env_key"] == connect.CODEX_KEY_VAR
    assert C.api_key not in connect.codex_config(C)  # the key lives in the environment, not the file


def test_codex_shell_sets_the_key_variable_and_names_the_model() -> None:
    out = run_bash(connect.codex_shell(C))
    assert f"codex -m {C.model}\n" in out and f"key={C.api_key}\n" in out
    whole = connect.codex(C)
    assert connect.codex_config(C) in whole and connect.codex_shell(C) in whole


def test_claude_code_gets_the_root_url_token_and_model() -> None:
    out = run_bash(connect.claude_code(C))
    assert f"url={C.root_url}\n" in out and C.root_url == "http://127.0.0.1:8501"
    assert f"token={C.api_key}\n" in out
    assert f"claude --model {C.model}\n" in out


def test_python_snippet_compiles_and_names_url_key_model() -> None:
    code = connect.openai_python(C)
    tree = ast.parse(code)
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert {C.base_url, C.api_key, C.model} <= strings
    compile(code, "snippet.py", "exec")


def test_js_snippet_parses_as_an_es_module(tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node, "node is needed to check the JavaScript snippet (apt-get install nodejs)"
    path = tmp_path / "snippet.mjs"
    path.write_text(connect.openai_js(C))
    done = subprocess.run([node, "--check", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    text = path.read_text()
    assert f'baseURL: "{C.base_url}"' in text and f'apiKey: "{C.api_key}"' in text


def test_base_url_pair_and_every_recipe_has_live_values() -> None:
    assert connect.base_url_and_key(C).splitlines() == [
        f"Base URL: {C.base_url}", f"API key: {C.api_key}", f"Model: {C.model}"]
    recipes = connect.recipes(C)
    assert [r.key for r in recipes] == ["codex", "claude_code", "openai_python", "openai_js", "curl",
                                        "base_url"]
    for r in recipes:
        assert C.model in r.text and (C.base_url in r.text or C.root_url in r.text), r.key


def test_curl_and_python_snippets_get_an_answer_from_the_real_server(llama_server, tmp_path) -> None:
    c = Connection(llama_server.base_url, llama_server.key,
                   llama_server.settings.current.active_model)
    curl = shutil.which("curl")
    assert curl, "curl is needed to run the curl snippet"
    done = subprocess.run(["bash", "-euc", connect.curl(c)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["object"] == "chat.completion"
    script = tmp_path / "snippet.py"
    script.write_text(connect.openai_python(c))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    paths = [r.path for r in llama_server.services.request_log.records()]
    assert paths == ["/v1/chat/completions", "/v1/chat/completions"]
    apps = [r.app for r in llama_server.services.request_log.records()]
    assert apps == ["curl", "OpenAI Python SDK"]
    assert httpx.get(llama_server.base_url + "/models", timeout=10).status_code == 401
    refused = llama_server.services.request_log.records()[-1]  # a wrong key is visible in the log
    assert (refused.status, refused.path, refused.app) == (401, "/v1/models", "httpx")
    assert "API key" in refused.error
