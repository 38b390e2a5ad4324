"""End to end: ``tater/hydra`` on the real server, a scripted tiny llama.cpp model that plans the
call, and tools of real MCP servers (the suite's MCPServer toolbox and server-everything).

The scripted model replies by the end of its prompt: the planner's and the composer's prompts
end with the user's question (so both say the plan), the doer's with "This step: <goal>".
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.tinymodels.scripted import write_scripted
from tests.conftest import LiveServer, start_live_server
from tests.mcp.everything import everything_entry, node

TOOLBOX = Path(__file__).with_name("toolbox_server.py")
END = "<|im_end|>\n<|im_start|>assistant\n"
TOOL_TIMEOUT = 4.0

# question -> (Verba id, goal, arguments)
TURNS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "What is 2 plus 3?": ("mcp_toolbox_add", "add 2 and 3", {"a": 2, "b": 3}),
    "Echo hello please.": ("mcp_everything_echo", "echo hello", {"message": "hello"}),
    "Crash the toolbox.": ("mcp_toolbox_crash", "crash it", {}),
    "Hang the toolbox.": ("mcp_toolbox_hang", "hang it", {}),
    "Garble the toolbox.": ("mcp_toolbox_garbage", "garble it", {}),
}


def scripts() -> dict[str, str]:
    out = {}
    for question, (verba_id, goal, args) in TURNS.items():
        out[question + END] = json.dumps({"action": "use_tools",
                                          "steps": [{"verba": verba_id, "goal": goal}]})
        out[f"This step: {goal}{END}"] = json.dumps({"verba": verba_id, "arguments": args})
    return out


@pytest.fixture(scope="module")
def planner_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scripted(tmp_path_factory.mktemp("hydra-mcp"), scripts(), hf=False).gguf


@pytest.fixture
def hydra_mcp(clean_env: Path, planner_gguf: Path) -> Iterator[LiveServer]:
    from app.providers.llama_cpp import LlamaCppProvider

    row = LlamaCppProvider.row_for(str(planner_gguf), n_ctx=8192)
    enabled = {v: {"enabled": True} for v, _, _ in TURNS.values()}
    live = start_live_server(
        clean_env, [row], row.id, hydra_tools_allowed=True,
        hydra={"tool_protocol": "json", "tool_timeout_seconds": TOOL_TIMEOUT, "max_steps": 1},
        verbas={**enabled, "clock": {"enabled": False}, "calculator": {"enabled": False}},
        mcp={"servers": [
            {"name": "toolbox", "command": sys.executable, "args": [str(TOOLBOX)]},
            {"name": "everything", "command": node(), "args": [str(everything_entry()), "stdio"]},
        ]})
    clients = live.services.context.hydra.mcp  # type: ignore[attr-defined]
    for name in ("toolbox", "everything"):  # learn their tools once, as the settings page does
        assert clients.refresh(name, 90).state == "running"
    yield live
    live.services.shutdown()  # type: ignore[attr-defined]


def ask(live: LiveServer, question: str) -> tuple[list[dict[str, Any]], float]:
    client = live.client(timeout=120)
    started = time.monotonic()
    resp = client.chat.completions.create(
        model="tater/hydra", messages=[{"role": "user", "content": question}],
        max_tokens=60, temperature=0)
    took = time.monotonic() - started
    tater = resp.model_extra["tater"]
    assert tater["llm_calls"] == 3, tater  # planner, doer, composer
    return tater["steps"], took


def test_hydra_plans_and_calls_mcp_tools(hydra_mcp: LiveServer) -> None:
    steps, _ = ask(hydra_mcp, "What is 2 plus 3?")
    assert steps == [{"verba": "mcp_toolbox_add", "ok": True, "summary": "5"}]
    steps, _ = ask(hydra_mcp, "Echo hello please.")
    assert steps == [{"verba": "mcp_everything_echo", "ok": True, "summary": "Echo: hello"}]


@pytest.mark.parametrize(("question", "said"), [
    ("Crash the toolbox.", "stopped during the call to crash"),
    ("Hang the toolbox.", "did not answer the call to hang in time"),
    ("Garble the toolbox.", "sent output that is not valid JSON-RPC"),
])
def test_broken_mcp_server_is_a_failed_step_and_the_next_request_works(
        hydra_mcp: LiveServer, question: str, said: str) -> None:
    steps, took = ask(hydra_mcp, question)
    verba_id = TURNS[question][0]
    assert [(s["verba"], s["ok"]) for s in steps] == [(verba_id, False)]
    assert said in steps[0]["summary"], steps[0]["summary"]
    assert took < TOOL_TIMEOUT + 20  # the step ended within the tool limit (plus three tiny calls)
    # The next request restarts the server: give it room to start on a busy CI machine.
    hydra_mcp.settings.update(hydra={**hydra_mcp.settings.saved.hydra.model_dump(),
                                     "tool_timeout_seconds": 60})
    steps, _ = ask(hydra_mcp, "What is 2 plus 3?")
    assert steps == [{"verba": "mcp_toolbox_add", "ok": True, "summary": "5"}]
