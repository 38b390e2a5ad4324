"""Hydra's prompts and the JSON schemas its planner and doer answer in.

Prompts are short and literal so that small local models can follow them; the schemas are
sent as ``response_format`` so runtimes with grammar support can enforce them.
"""

from __future__ import annotations

import json
from typing import Any

from app.hydra.history import Conversation
from app.providers.base import ChatMessage
from app.verbas.base import Verba

DEFAULT_PERSONA = ("You are Hydra, the assistant inside Tater Desktop. You are friendly, "
                   "direct and brief.")
GOAL_MAX_CHARS = 120
CONTEXT_MAX_CHARS = 2000
RESULT_MAX_CHARS = 1500


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def persona(configured: str) -> str:
    return configured.strip() or DEFAULT_PERSONA


def _with_client_context(text: str, conv: Conversation) -> str:
    if conv.client_context:
        text += ("\n\nInstructions from the client application:\n"
                 + _cut(conv.client_context, CONTEXT_MAX_CHARS * 4))
    return text


# -- planner -----------------------------------------------------------------------------

def plan_schema(verba_ids: list[str], max_steps: int, *, required: bool = False
                ) -> dict[str, Any]:
    """The plan's shape; ``required`` (client tool_choice) rules out "chat"."""
    steps: dict[str, Any] = {"type": "array", "maxItems": max_steps}
    if required:
        steps["minItems"] = 1
    return {
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": ["use_tools"] if required else ["chat", "use_tools"]},
            "steps": {**steps, "items": {
                "type": "object",
                "properties": {"verba": {"type": "string", "enum": verba_ids},
                               "goal": {"type": "string", "maxLength": GOAL_MAX_CHARS}},
                "required": ["verba", "goal"], "additionalProperties": False}},
        },
        "required": ["action", "steps"], "additionalProperties": False,
    }


def planner_messages(conv: Conversation, verbas: list[Verba], max_steps: int, *,
                     required: bool = False) -> list[ChatMessage]:
    tools = "\n".join(f"- {v.contract()}" for v in verbas)
    shape = ('{"action": "use_tools", "steps": [{"verba": "<tool id>", "goal": '
             f'"<what this step must do>"}}]}} with 1 to {max_steps} steps, in order.')
    if required:
        system = ("You are the planner of Hydra, an assistant that can use tools. The user's "
                  f"latest message must be handled with tools.\nTools:\n{tools}\n\n"
                  f"Reply with JSON only: {shape}")
    else:
        system = ("You are the planner of Hydra, an assistant that can use tools. Decide whether "
                  f"the user's latest message needs a tool.\nTools:\n{tools}\n\n"
                  'Reply with JSON only. No tool needed: {"action": "chat", "steps": []}. '
                  f"Tools needed: {shape}")
    system += " Use only the tools listed."
    if conv.client_context:
        system += "\n\nContext from the client application:\n" + _cut(conv.client_context,
                                                                       CONTEXT_MAX_CHARS)
    return [ChatMessage("system", system), *conv.history, conv.latest]


def plan_repair_messages(messages: list[ChatMessage], bad_output: str,
                         error: str) -> list[ChatMessage]:
    return [*messages,
            ChatMessage("assistant", _cut(bad_output, 1000) or "(empty)"),
            ChatMessage("user", f"That was not a valid plan ({_cut(error, 300)}). Reply again "
                                'with JSON only: {"action": "chat" or "use_tools", "steps": [...]}.')]


# -- doer --------------------------------------------------------------------------------

def call_schema(v: Verba) -> dict[str, Any]:
    """``{"verba": id, "arguments": {...}}`` with the Verba's schema ($defs hoisted)."""
    args = dict(v.parameters)
    defs = args.pop("$defs", None)
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"verba": {"type": "string", "enum": [v.id]}, "arguments": args},
        "required": ["verba", "arguments"], "additionalProperties": False}
    if defs:
        schema["$defs"] = defs
    return schema


def doer_messages(conv: Conversation, v: Verba, goal: str, findings: list[str],
                  native: bool) -> list[ChatMessage]:
    schema = json.dumps(v.parameters, separators=(",", ":"))
    if native:
        how = f"Call the tool {v.id} exactly once."
    else:
        how = ('Reply with JSON only, exactly one call: {"verba": "' + v.id
               + '", "arguments": {...}} where the arguments match the schema.')
    system = (f"You make exactly one call to the tool {v.id}.\nTool: {v.contract()}\n"
              f"Arguments JSON schema: {schema}\n{how}")
    recent = "\n".join(f"{m.role}: {_cut(m.content, 300)}" for m in conv.history[-4:])
    user = f"User request: {conv.latest.content}\nThis step: {goal}"
    if recent:
        user = f"Recent conversation:\n{recent}\n\n{user}"
    if findings:
        user += "\nResults so far:\n" + "\n".join(findings)
    return [ChatMessage("system", system), ChatMessage("user", user)]


def repair_messages(messages: list[ChatMessage], bad_output: str, error: str,
                    v: Verba) -> list[ChatMessage]:
    return [*messages,
            ChatMessage("assistant", _cut(bad_output, 1000) or "(empty)"),
            ChatMessage("user", f"That call was invalid: {_cut(error, 500)}. Reply again with one "
                                f"corrected call to {v.id}, JSON only, matching the schema.")]


# -- composer ----------------------------------------------------------------------------

def finding(n: int, v_name: str, ok: bool, summary: str, data: Any) -> str:
    """One numbered result line as the doer and composer see it."""
    line = f"{n}. {v_name} ({'ok' if ok else 'FAILED'}): {summary}"
    if data is not None:
        try:
            blob = json.dumps(data, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            blob = repr(data)
        line += f"\n   data: {_cut(blob, RESULT_MAX_CHARS)}"
    return line


def composer_messages(conv: Conversation, persona_text: str, *, tools_possible: bool,
                      findings: list[str], notes: list[str]) -> list[ChatMessage]:
    system = _with_client_context(persona_text, conv)
    if findings:
        system += ("\n\nYou used tools for the user's latest message. Results:\n"
                   + "\n".join(findings)
                   + "\n\nAnswer from these results. Say plainly if something failed or was "
                     "not done; never claim an action that is not listed as ok.")
    elif tools_possible:
        system += "\n\nNo tool was used for this answer: do not claim to have taken any action."
    else:
        system += ("\n\nYou cannot use tools or take actions in this conversation: answer in "
                   "words only, and never claim to have done something.")
    if notes:
        system += "\n\nNotes:\n" + "\n".join(f"- {n}" for n in notes)
    return [ChatMessage("system", system), *conv.history, conv.latest]
