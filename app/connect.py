"""Ready-to-paste set-ups for the apps people connect to Tater ("Connect an app" in the tray).

Each recipe fills in the live base URL, key and model id.  Nothing here needs Qt, so the text is
unit-tested (the TOML parses, the Python compiles, the shell lines set the right variables) and
the runnable ones are run against a real server.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

CODEX_KEY_VAR = "TATER_API_KEY"
PROMPT = "Hello!"


@dataclass(frozen=True)
class Connection:
    """What every recipe needs: ``base_url`` ends in ``/v1``."""

    base_url: str
    api_key: str
    model: str

    @property
    def root_url(self) -> str:
        """The server root (Anthropic clients add ``/v1`` themselves)."""
        return self.base_url.rstrip("/").removesuffix("/v1")


@dataclass(frozen=True)
class Recipe:
    """One app's set-up: a menu label and the text copied to the clipboard."""

    key: str
    label: str
    text: str


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def codex_config(c: Connection) -> str:
    """The ``~/.codex/config.toml`` lines: Tater as a provider speaking the Responses API."""
    return (f"model = {_toml_str(c.model)}\n"
            'model_provider = "tater"\n'
            "\n"
            "[model_providers.tater]\n"
            'name = "Tater Desktop"\n'
            f"base_url = {_toml_str(c.base_url)}\n"
            f'env_key = "{CODEX_KEY_VAR}"\n'
            'wire_api = "responses"\n')


def codex_shell(c: Connection) -> str:
    """The shell lines that give Codex the key and start it."""
    return (f"export {CODEX_KEY_VAR}={shlex.quote(c.api_key)}\n"
            f"codex -m {shlex.quote(c.model)}\n")


def codex(c: Connection) -> str:
    return ("# 1. Add to ~/.codex/config.toml:\n" + codex_config(c) +
            "\n# 2. Then, in your shell:\n" + codex_shell(c))


def claude_code(c: Connection) -> str:
    """Claude Code speaks Anthropic's Messages API: base URL without ``/v1``, token, model."""
    return (f"export ANTHROPIC_BASE_URL={shlex.quote(c.root_url)}\n"
            f"export ANTHROPIC_AUTH_TOKEN={shlex.quote(c.api_key)}\n"
            f"claude --model {shlex.quote(c.model)}\n")


def openai_python(c: Connection) -> str:
    """A complete Python script with the official ``openai`` SDK."""
    return ("from openai import OpenAI\n"
            "\n"
            f"client = OpenAI(base_url={json.dumps(c.base_url)}, api_key={json.dumps(c.api_key)})\n"
            "reply = client.chat.completions.create(\n"
            f"    model={json.dumps(c.model)},\n"
            f'    messages=[{{"role": "user", "content": {json.dumps(PROMPT)}}}],\n'
            ")\n"
            "print(reply.choices[0].message.content)\n")


def openai_js(c: Connection) -> str:
    """A complete ES module with the official ``openai`` package for Node."""
    return ('import OpenAI from "openai";\n'
            "\n"
            f"const client = new OpenAI({{ baseURL: {json.dumps(c.base_url)}, "
            f"apiKey: {json.dumps(c.api_key)} }});\n"
            "const reply = await client.chat.completions.create({\n"
            f"  model: {json.dumps(c.model)},\n"
            f'  messages: [{{ role: "user", content: {json.dumps(PROMPT)} }}],\n'
            "});\n"
            "console.log(reply.choices[0].message.content);\n")


def curl(c: Connection) -> str:
    """One chat completion with curl."""
    body = json.dumps({"model": c.model, "messages": [{"role": "user", "content": PROMPT}]})
    return (f"curl {shlex.quote(c.base_url.rstrip('/') + '/chat/completions')} \\\n"
            f"  -H {shlex.quote('Authorization: Bearer ' + c.api_key)} \\\n"
            "  -H 'Content-Type: application/json' \\\n"
            f"  -d {shlex.quote(body)}\n")


def base_url_and_key(c: Connection) -> str:
    """For apps with an "OpenAI-compatible" form (Continue, Open WebUI, Jan, LibreChat…)."""
    return (f"Base URL: {c.base_url}\n"
            f"API key: {c.api_key}\n"
            f"Model: {c.model}\n")


def recipes(c: Connection) -> list[Recipe]:
    """Every set-up, in menu order."""
    return [
        Recipe("codex", "Codex CLI", codex(c)),
        Recipe("claude_code", "Claude Code", claude_code(c)),
        Recipe("openai_python", "OpenAI SDK (Python)", openai_python(c)),
        Recipe("openai_js", "OpenAI SDK (JavaScript)", openai_js(c)),
        Recipe("curl", "curl", curl(c)),
        Recipe("base_url", "Base URL + key (Continue, Open WebUI…)", base_url_and_key(c)),
    ]
