"""Built-in Verba: lights, switches and scenes through the Home Assistant REST API.

Endpoints used: ``GET /api/states``, ``POST /api/template`` (to resolve an area name with
``area_entities``) and ``POST /api/services/<domain>/<service>``.  The long-lived access
token is a secret setting (kept in the keyring); the base URL is a plain setting.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

import httpx
from pydantic import Field

from app.verbas.base import SettingField, VerbaContext, VerbaError, VerbaResult, verba

Action = Literal["list_states", "turn_on", "turn_off", "toggle", "activate_scene"]
SWITCHABLE = ("light", "switch")
_FILLER = re.compile(r"\b(the|all|my|a|in|of|lights?|lamps?|switch(es)?|scene|room)\b")
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())


def _core(text: str) -> str:
    return " ".join(_FILLER.sub(" ", _norm(text)).split())


def _name(state: dict[str, Any]) -> str:
    return str(state.get("attributes", {}).get("friendly_name") or state["entity_id"])


class HomeAssistant:
    """A small client for the REST API (one per call)."""

    def __init__(self, base_url: str, token: str, timeout: float) -> None:
        if not re.match(r"^https?://", base_url):
            raise VerbaError("the Home Assistant URL must start with http:// or https://")
        self.client = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout,
                                        headers={"Authorization": f"Bearer {token}",
                                                 "Content-Type": "application/json"})

    async def __aenter__(self) -> HomeAssistant:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def _send(self, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            resp = await self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise VerbaError(f"cannot reach Home Assistant: {type(exc).__name__}: {exc}") from None
        if resp.status_code == 401:
            raise VerbaError("Home Assistant refused the access token (401): check the token")
        if resp.status_code >= 400:
            raise VerbaError(f"Home Assistant answered {resp.status_code} to {method} {path}: "
                             f"{resp.text[:200]}")
        return resp

    async def states(self) -> list[dict[str, Any]]:
        data = (await self._send("GET", "/api/states")).json()
        if not isinstance(data, list):
            raise VerbaError("unexpected answer from /api/states")
        return data

    async def area_entities(self, area: str) -> list[str]:
        template = "{{ area_entities(" + json.dumps(area) + ") | tojson }}"
        try:
            resp = await self._send("POST", "/api/template", {"template": template})
            found = json.loads(resp.text)
        except (VerbaError, ValueError):
            return []  # unknown area, or a Home Assistant without templates
        return [e for e in found if isinstance(e, str)] if isinstance(found, list) else []

    async def call(self, domain: str, service: str, data: dict[str, Any]) -> Any:
        resp = await self._send("POST", f"/api/services/{domain}/{service}", data)
        try:
            return resp.json()
        except ValueError:
            return None


async def resolve(ha: HomeAssistant, states: list[dict[str, Any]], target: str,
                  domains: tuple[str, ...]) -> list[dict[str, Any]]:
    """Entities matching an entity id, a friendly name, or an area name, in ``domains``."""
    pool = [s for s in states if s["entity_id"].split(".", 1)[0] in domains]
    if "light" in _norm(target).split() or "lights" in _norm(target).split():
        pool = [s for s in pool if s["entity_id"].startswith("light.")] or pool
    wanted, core = _norm(target), _core(target)
    by_id = [s for s in pool if s["entity_id"] == target.strip()]
    if by_id:
        return by_id
    exact = [s for s in pool if _norm(_name(s)) == wanted]
    if exact:
        return exact
    if not core:
        return []
    area = set(await ha.area_entities(core)) or set(await ha.area_entities(target.strip()))
    in_area = [s for s in pool if s["entity_id"] in area]
    if in_area:
        return in_area
    named = [s for s in pool if _core(_name(s)) == core]
    if named:
        return named
    words = core.split()
    return [s for s in pool if all(w in _norm(_name(s)).split() for w in words)]


def _color(value: str) -> dict[str, Any]:
    m = _HEX.match(value.strip())
    if m:
        h = m.group(1)
        return {"rgb_color": [int(h[i:i + 2], 16) for i in (0, 2, 4)]}
    return {"color_name": value.strip().lower().replace(" ", "")}


def _describe(entities: list[dict[str, Any]]) -> str:
    names = [f"{_name(s)} ({s['entity_id']})" for s in entities]
    return ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")


@verba(id="home_assistant", name="Home Assistant",
       description="Controls the home through Home Assistant: lists states; turns lights and "
                   "switches on, off or toggles them by friendly name or room/area (with optional "
                   "brightness 0-100 and colour); activates scenes.",
       when_to_use="the user asks to switch, dim or colour lights, toggle switches, activate a "
                   "scene, or asks whether something at home is on.",
       settings=(SettingField("url", "Home Assistant URL", "e.g. http://homeassistant.local:8123",
                              required=True),
                 SettingField("token", "Long-lived access token", "Profile > Security in Home "
                              "Assistant", secret=True, required=True)),
       acts_on_world=True)
async def home_assistant(
        ctx: VerbaContext,
        action: Annotated[Action, Field(description="What to do")],
        target: Annotated[str, Field(description="Friendly name, room/area or entity id, e.g. "
                                     "'office' or 'kitchen lights'; may be empty for "
                                     "list_states", max_length=120)] = "",
        brightness: Annotated[int | None, Field(ge=0, le=100,
                                                description="Brightness percent (lights)")] = None,
        color: Annotated[str | None, Field(max_length=40,
                                           description="Colour name or #rrggbb (lights)")] = None,
) -> VerbaResult:
    """Act on Home Assistant entities."""
    url, token = ctx.setting("url"), ctx.secret("token")
    if not url or not token:
        raise VerbaError("Home Assistant is not configured (URL and access token needed)")
    async with HomeAssistant(str(url), token, min(ctx.timeout, 15.0)) as ha:
        states = await ha.states()
        if action == "list_states":
            return await _list(ha, states, target)
        if not target.strip():
            raise VerbaError(f"{action} needs a target (a name, a room or an entity id)")
        if action == "activate_scene":
            scenes = await resolve(ha, states, target, ("scene",))
            if not scenes:
                raise VerbaError(f"no scene matches {target!r}")
            await ha.call("scene", "turn_on", {"entity_id": [s["entity_id"] for s in scenes]})
            return VerbaResult.success(f"Activated scene {_describe(scenes)}.",
                                       {"entities": [s["entity_id"] for s in scenes]})
        found = await resolve(ha, states, target, SWITCHABLE)
        if not found:
            raise VerbaError(f"no light or switch matches {target!r}")
        changed: list[Any] = []
        for domain in SWITCHABLE:
            ids = [s["entity_id"] for s in found if s["entity_id"].startswith(domain + ".")]
            if not ids:
                continue
            data: dict[str, Any] = {"entity_id": ids}
            if domain == "light" and action == "turn_on":
                if brightness is not None:
                    data["brightness_pct"] = brightness
                if color:
                    data.update(_color(color))
            result = await ha.call(domain, action, data)
            if isinstance(result, list):
                changed.extend(result)
    verb = {"turn_on": "Turned on", "turn_off": "Turned off", "toggle": "Toggled"}[action]
    extra = "".join([f" at {brightness}% brightness" if brightness is not None else "",
                     f" in {color}" if color else ""])
    return VerbaResult.success(f"{verb} {_describe(found)}{extra}.",
                               {"entities": [s["entity_id"] for s in found],
                                "new_states": [{"entity_id": c.get("entity_id"),
                                                "state": c.get("state")}
                                               for c in changed if isinstance(c, dict)]})


async def _list(ha: HomeAssistant, states: list[dict[str, Any]], target: str) -> VerbaResult:
    domains = (*SWITCHABLE, "scene")
    chosen = (await resolve(ha, states, target, domains)) if target.strip() else [
        s for s in states if s["entity_id"].split(".", 1)[0] in domains]
    if not chosen:
        raise VerbaError(f"nothing matches {target!r}" if target.strip() else
                         "Home Assistant has no lights, switches or scenes")
    lines = [f"{_name(s)} ({s['entity_id']}): {s.get('state')}" for s in chosen[:50]]
    return VerbaResult.success("; ".join(lines),
                               {"states": [{"entity_id": s["entity_id"], "name": _name(s),
                                            "state": s.get("state")} for s in chosen[:50]]})
