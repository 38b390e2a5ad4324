"""One Hydra turn: plan, act through Verbas, then compose the answer.

The turn runs as a task that pushes events to a callback; :class:`app.hydra.agent.HydraAgent`
turns that into an async iterator with keep-alive progress lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from app.hydra import prompts
from app.hydra.events import HydraEvent, HydraRequestError, Progress, StepRecord, TurnReport
from app.hydra.history import Conversation, split_messages
from app.hydra.jsonproto import NotJson, json_schema_format, parse_object
from app.providers.base import ChatChunk, ChatModel, ChatRequest, ChatResult, Usage
from app.verbas.base import RESERVED_ARGS, ArgumentsInvalid, Origin, Verba, VerbaResult

if TYPE_CHECKING:
    from app.keystore import SecretStore
    from app.settings import Settings
    from app.verbas.registry import VerbaRegistry

log = logging.getLogger(__name__)

DOER_MAX_TOKENS = 400


class _CannotAct(Exception):
    """A step could not produce a valid call (after its repair attempt)."""


@dataclass
class VerbaCall:
    """A checked call: the Verba, its validated arguments, and origin-like names removed."""

    verba: Verba
    args: dict[str, Any]
    stripped: list[str]


class Turn:
    """State of one turn: budgets, usage, steps, findings."""

    def __init__(self, settings: Settings, registry: VerbaRegistry, secrets: SecretStore | None,
                 model: ChatModel, request: ChatRequest, origin: Origin,
                 emit: Callable[[HydraEvent], None]) -> None:
        self.settings, self.hs = settings, settings.hydra
        self.registry, self.secrets = registry, secrets
        self.model, self.request, self.origin, self.emit = model, request, origin, emit
        self.usage = Usage()
        self.calls = 0
        self.steps: list[StepRecord] = []
        self.findings: list[str] = []
        self.notes: list[str] = []
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + self.hs.turn_timeout_seconds
        protocol = self.hs.tool_protocol
        self.native = protocol == "native" or (protocol == "auto"
                                               and model.native_tool_calls)

    # -- the turn --------------------------------------------------------------------
    async def run(self) -> None:
        conv = split_messages(self.request.messages, self.hs.history_messages)
        choice, forced = read_tool_choice(self.request.tool_choice)
        offered = (self.registry.enabled(self.settings, self.secrets)
                   if self.settings.hydra_tools_allowed and choice != "none" else [])
        if choice in ("required", "named"):
            self.check_forced(offered, forced)
        if not offered:
            await self.compose(conv, tools_possible=False)
            return
        try:
            async with asyncio.timeout_at(self.deadline):
                await self.act(conv, offered, required=choice != "auto", forced=forced)
        except TimeoutError:
            self.note(f"The turn time limit ({self.hs.turn_timeout_seconds:g} s) was reached.")
            await self.fixed_answer("I ran out of time before I could finish: this turn is "
                                    f"limited to {self.hs.turn_timeout_seconds:g} seconds.")
            return
        except _CannotAct as exc:
            await self.fixed_answer(f"I couldn't do that: {exc}")
            return
        await self.compose(conv, tools_possible=True)

    def check_forced(self, offered: list[Verba], forced: str | None) -> None:
        """A client that demands a Verba (tool_choice) gets a clear 400 when it cannot be had."""
        if not self.settings.hydra_tools_allowed:
            raise HydraRequestError("tool_choice asks Hydra to use a Verba, but Hydra tools are "
                                    "turned off in the settings", param="tool_choice")
        ids = [v.id for v in offered]
        if not ids:
            raise HydraRequestError("tool_choice asks Hydra to use a Verba, but no Verba is "
                                    "enabled and configured", param="tool_choice")
        if forced is not None and forced not in ids:
            raise HydraRequestError(f"tool_choice names {forced!r}, which is not an enabled Verba "
                                    f"(enabled: {', '.join(ids)})", param="tool_choice")

    async def act(self, conv: Conversation, offered: list[Verba], *, required: bool = False,
                  forced: str | None = None) -> None:
        if forced is not None:
            plan = [(forced, conv.latest.content[:prompts.GOAL_MAX_CHARS])]
        elif not self.budget_for(1):
            if required:
                raise _CannotAct(f"the limit of {self.hs.max_llm_calls} model calls per turn "
                                 "leaves no room for tools.")
            self.note(f"The limit of {self.hs.max_llm_calls} model calls per turn leaves no room "
                      "for tools, so none were used.")
            return
        else:
            self.emit(Progress("Hydra is planning…"))
            plan = await self.plan(conv, offered, required=required)
        if not plan:
            return
        limit = self.hs.max_steps
        if len(plan) > limit:
            self.note(f"The plan had {len(plan)} steps; only the first {limit} ran "
                      f"(the step limit is {limit}).")
            plan = plan[:limit]
        for n, (verba_id, goal) in enumerate(plan, 1):
            if not self.budget_for(1):
                self.note(f"Stopped before step {n}: the limit of {self.hs.max_llm_calls} model "
                          "calls per turn was reached.")
                return
            v = self.registry.get(verba_id)
            if v is None or v not in offered:
                self.steps.append(StepRecord(verba_id, False, "not an enabled Verba"))
                raise _CannotAct(f"the plan asked for {verba_id!r}, which is not an enabled tool.")
            self.emit(Progress(f"Step {n}: {v.name}…"))
            call = await self.make_call(conv, v, goal)
            result = await self.run_verba(call)
            self.steps.append(StepRecord(v.id, result.ok, result.summary))
            self.findings.append(prompts.finding(n, v.name, result.ok, result.summary,
                                                 result.data))
            self.emit(Progress(f"{v.name}: {'done' if result.ok else 'failed'} — {result.summary}"))
            if not result.ok:
                if n < len(plan):
                    self.note(f"Step {n} failed, so the remaining {len(plan) - n} step(s) were "
                              "not run.")
                return

    # -- planner ---------------------------------------------------------------------
    async def plan(self, conv: Conversation, offered: list[Verba], *,
                   required: bool = False) -> list[tuple[str, str]]:
        ids = [v.id for v in offered]
        schema = prompts.plan_schema(ids, self.hs.max_steps, required=required)
        messages = prompts.planner_messages(conv, offered, self.hs.max_steps, required=required)
        req = self.internal_request(messages, planner_max_tokens(self.hs.max_steps),
                                    response_format=json_schema_format("hydra_plan", schema))
        result = await self.llm(req)
        try:
            return _read_plan(result.text, required)
        except ValueError as exc:
            error = str(exc)
        if self.budget_for(1):
            req = replace(req, messages=prompts.plan_repair_messages(messages, result.text, error))
            result = await self.llm(req)
            try:
                return _read_plan(result.text, required)
            except ValueError as exc:
                error = str(exc)
        if required:
            raise _CannotAct(f"the model did not make a usable plan ({error}), so nothing was done.")
        self.note(f"The planner's answer was unusable ({error}); no tool was used.")
        return []

    # -- doer ------------------------------------------------------------------------
    async def make_call(self, conv: Conversation, v: Verba, goal: str) -> VerbaCall:
        messages = prompts.doer_messages(conv, v, goal, self.findings, self.native)
        req = self.doer_request(messages, v)
        result = await self.llm(req)
        raw, call_or_error = self.read_call(result, v)
        if isinstance(call_or_error, VerbaCall):
            return call_or_error
        log.info("Hydra: invalid call to %s (%s); one repair attempt", v.id, call_or_error)
        if not self.budget_for(1):
            self.steps.append(StepRecord(v.id, False, f"invalid call: {call_or_error}"))
            raise _CannotAct(f"the call to {v.name} was invalid ({call_or_error}) and the model "
                             "call limit left no room to repair it.")
        self.emit(Progress(f"Repairing the call to {v.name}…"))
        req = replace(req, messages=prompts.repair_messages(messages, raw, call_or_error, v))
        result = await self.llm(req)
        raw, second = self.read_call(result, v)
        if isinstance(second, VerbaCall):
            return second
        self.steps.append(StepRecord(v.id, False, f"invalid call: {second}"))
        raise _CannotAct(f"the model could not produce a valid call to {v.name} "
                         f"({second}), so nothing was done.")

    def doer_request(self, messages: list[Any], v: Verba) -> ChatRequest:
        if self.native:
            return self.internal_request(messages, DOER_MAX_TOKENS, tools=[v.tool_spec()],
                                         tool_choice={"type": "function",
                                                      "function": {"name": v.id}})
        return self.internal_request(messages, DOER_MAX_TOKENS, response_format=json_schema_format(
            f"hydra_call_{v.id}", prompts.call_schema(v)))

    def read_call(self, result: ChatResult, v: Verba) -> tuple[str, VerbaCall | str]:
        """(raw text for a repair prompt, the checked call or why it is invalid)."""
        if result.tool_calls:
            if len(result.tool_calls) > 1:
                self.note(f"The model made {len(result.tool_calls)} calls where one was expected; "
                          "only the first was considered.")
            fn = result.tool_calls[0].get("function", {})
            raw = json.dumps({"verba": fn.get("name"), "arguments": fn.get("arguments")})
            name, arguments = fn.get("name") or "", fn.get("arguments") or "{}"
            try:
                args = json.loads(arguments) if isinstance(arguments, str) else arguments
            except ValueError:
                return raw, "the arguments are not valid JSON"
        else:
            raw = result.text
            try:
                obj = parse_object(result.text)
            except NotJson as exc:
                return raw, str(exc)
            if "arguments" in obj and isinstance(obj.get("arguments"), dict):
                name, args = str(obj.get("verba") or obj.get("name") or v.id), obj["arguments"]
            else:  # a bare arguments object: the doer only had one tool to call
                name, args = v.id, obj
        return raw, self.check_call(name, args, v)

    def check_call(self, name: str, args: Any, v: Verba) -> VerbaCall | str:
        known = self.registry.get(name)
        if known is None:
            return f"there is no tool named {name!r}; this step must call {v.id}"
        if name != v.id:
            return f"this step must call {v.id}, not {name}"
        if not self.registry.is_enabled(known, self.settings):
            return f"{name} is not enabled"
        if not isinstance(args, dict):
            return "the arguments must be a JSON object"
        stripped = sorted(k for k in args if k in RESERVED_ARGS)
        clean = {k: a for k, a in args.items() if k not in RESERVED_ARGS}
        try:
            return VerbaCall(v, v.validate(clean), stripped)
        except ArgumentsInvalid as exc:
            return f"invalid arguments: {exc}"

    # -- acting ----------------------------------------------------------------------
    async def run_verba(self, call: VerbaCall) -> VerbaResult:
        """Run one call within the tool time limit, cut to what is left of the turn."""
        v = call.verba
        if call.stripped:
            log.warning("Hydra: ignored origin-like arguments %s in a call to %s", call.stripped, v.id)
            self.note(f"Ignored {', '.join(call.stripped)} in the call to {v.name}: who is asking "
                      "comes from the request, never from the model.")
        remaining = self.deadline - self.loop.time()
        timeout = min(self.hs.tool_timeout_seconds, max(remaining, 0.0))
        ctx = self.registry.context(v, self.origin, self.settings, self.secrets, timeout)
        return await self.registry.invoke(v, call.args, ctx, timeout)

    # -- composer --------------------------------------------------------------------
    async def compose(self, conv: Conversation, *, tools_possible: bool) -> None:
        messages = prompts.composer_messages(conv, prompts.persona(self.hs.persona),
                                             tools_possible=tools_possible,
                                             findings=self.findings, notes=self.notes)
        req = replace(self.request, messages=messages, tools=None, tool_choice=None,
                      parallel_tool_calls=None, logprobs=False, top_logprobs=None)
        self.calls += 1
        finish, usage, attempted = "stop", None, []
        try:
            async with asyncio.timeout_at(self.deadline):
                stream = self.model.stream(req)
                async with contextlib.aclosing(stream):  # type: ignore[type-var]
                    async for chunk in stream:
                        if chunk.tool_calls:
                            attempted.extend(d.name for d in chunk.tool_calls if d.name)
                        if chunk.text:
                            self.emit(ChatChunk(text=chunk.text))
                        if chunk.usage:
                            usage = chunk.usage
                        if chunk.finish_reason:
                            finish = chunk.finish_reason
        except TimeoutError:
            self.note(f"The turn time limit ({self.hs.turn_timeout_seconds:g} s) cut the answer "
                      "short.")
            self.emit(ChatChunk(text="\n\n[Hydra: the answer was cut short by the turn time "
                                     f"limit of {self.hs.turn_timeout_seconds:g} s.]"))
            finish = "length"
        if usage:
            self.usage += usage
        if attempted or finish == "tool_calls":
            names = ", ".join(dict.fromkeys(attempted)) or "a tool"
            for name in dict.fromkeys(attempted or ["?"]):
                self.steps.append(StepRecord(name, False, "refused: the answer may not call tools"))
            self.emit(ChatChunk(text=f"\n\n[Hydra did not run {names}: tools cannot be called "
                                     "from an answer.]"))
            finish = "stop" if finish == "tool_calls" else finish
        self.finish(finish)

    async def fixed_answer(self, text: str) -> None:
        """An answer Hydra writes itself (no model call), e.g. when it could not act."""
        done = [s for s in self.steps if s.ok]
        if done:
            text += " Done before that: " + "; ".join(s.summary for s in done)
        self.emit(ChatChunk(text=text))
        self.finish("stop")

    def finish(self, reason: str) -> None:
        self.emit(ChatChunk(finish_reason=reason, usage=self.usage))
        self.emit(TurnReport(list(self.steps), self.usage, reason, list(self.notes), self.calls))

    # -- plumbing --------------------------------------------------------------------
    def budget_for(self, n: int) -> bool:
        """True when ``n`` more acting calls still leave one call for the composer."""
        return self.calls + n + 1 <= self.hs.max_llm_calls

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.emit(Progress(text))

    def internal_request(self, messages: list[Any], max_tokens: int, **kw: Any) -> ChatRequest:
        return ChatRequest(messages=messages, temperature=0.0, top_p=1.0, max_tokens=max_tokens,
                           seed=self.request.seed, user=self.request.user, **kw)

    async def llm(self, req: ChatRequest) -> ChatResult:
        self.calls += 1
        result = await self.model.complete(req)
        self.usage += result.usage
        return result


def read_tool_choice(choice: Any) -> tuple[str, str | None]:
    """The client's ``tool_choice`` for Hydra: auto | none | required | (named, Verba id)."""
    if choice is None or choice == "auto":
        return "auto", None
    if choice in ("none", "required"):
        return choice, None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if isinstance(name, str) and name:
            return "named", name
    raise HydraRequestError('tool_choice must be "auto", "none", "required" or '
                            '{"type": "function", "function": {"name": <Verba id>}}',
                            param="tool_choice")


def planner_max_tokens(max_steps: int) -> int:
    """Room for a full plan of ``max_steps`` steps (goals are capped in the schema)."""
    return 96 + max_steps * (prompts.GOAL_MAX_CHARS + 40)


def _read_plan(text: str, required: bool = False) -> list[tuple[str, str]]:
    obj = parse_object(text)
    action = str(obj.get("action", "")).strip().lower()
    steps = obj.get("steps", [])
    if not isinstance(steps, list):
        raise ValueError('"steps" must be a list')
    if required and (action == "chat" or not steps):
        raise ValueError("a tool must be used for this request")
    if action == "chat":
        return []
    if action not in ("use_tools", "tools", "act", ""):
        raise ValueError(f'"action" must be "chat" or "use_tools", not {action!r}')
    out = []
    for step in steps:
        if isinstance(step, dict) and isinstance(step.get("verba"), str):
            out.append((step["verba"].strip(), str(step.get("goal", ""))[:prompts.GOAL_MAX_CHARS]))
        elif isinstance(step, str):
            out.append((step.strip(), ""))
        else:
            raise ValueError('each step must be {"verba": ..., "goal": ...}')
    return out
