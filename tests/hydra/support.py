"""Hydra test helpers: planner/doer replies for :class:`tests.fakes.ScriptedModel`, and small
local HTTP servers (Home Assistant, pages)."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.conftest import serve_http


def plan(*steps: tuple[str, str]) -> str:
    """A planner reply using tools."""
    return json.dumps({"action": "use_tools",
                       "steps": [{"verba": v, "goal": g} for v, g in steps]})


def call(verba: str, **arguments: Any) -> str:
    """A doer reply in the JSON protocol."""
    return json.dumps({"verba": verba, "arguments": arguments})


CHAT_PLAN = json.dumps({"action": "chat", "steps": []})


# -- local HTTP servers --------------------------------------------------------------------

@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


Route = Callable[[Seen], tuple[int, dict[str, str], bytes]]


@contextmanager
def http_server(route: Route) -> Iterator[tuple[str, list[Seen]]]:
    """Serve ``route`` on 127.0.0.1:<free port>; yield (base url, requests seen)."""
    seen: list[Seen] = []

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            req = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            seen.append(req)
            status, headers, payload = route(req)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(payload)

        do_GET = do_POST = _handle

        def log_message(self, *args: Any) -> None:
            pass

    with serve_http(Handler) as url:
        yield url, seen


HA_TOKEN = "ha-test-token-0123456789"
HA_AREAS = {"office": ["light.office", "switch.office_fan"], "kitchen": ["light.kitchen"]}


class FakeHomeAssistant:
    """The Home Assistant REST endpoints the Verba uses, with an in-memory state."""

    def __init__(self, token: str = HA_TOKEN) -> None:
        self.token = token
        self.states: dict[str, dict[str, Any]] = {
            "light.office": {"entity_id": "light.office", "state": "off",
                             "attributes": {"friendly_name": "Office Light"}},
            "light.kitchen": {"entity_id": "light.kitchen", "state": "on",
                              "attributes": {"friendly_name": "Kitchen Ceiling"}},
            "switch.office_fan": {"entity_id": "switch.office_fan", "state": "off",
                                  "attributes": {"friendly_name": "Office Fan"}},
            "scene.movie_night": {"entity_id": "scene.movie_night", "state": "scening",
                                  "attributes": {"friendly_name": "Movie Night"}},
            "sensor.temp": {"entity_id": "sensor.temp", "state": "21",
                            "attributes": {"friendly_name": "Temperature"}},
        }
        self.service_calls: list[tuple[str, str, Any]] = []

    def __call__(self, req: Seen) -> tuple[int, dict[str, str], bytes]:
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {}, b"401: Unauthorized"
        js = {"Content-Type": "application/json"}
        if req.method == "GET" and req.path == "/api/states":
            return 200, js, json.dumps(list(self.states.values())).encode()
        if req.method == "POST" and req.path == "/api/template":
            m = re.search(r'area_entities\("([^"]*)"\)', req.body["template"])
            area = (m.group(1) if m else "").lower()
            return 200, {"Content-Type": "text/plain"}, json.dumps(HA_AREAS.get(area, [])).encode()
        m = re.fullmatch(r"/api/services/(\w+)/(\w+)", req.path)
        if req.method == "POST" and m:
            domain, service = m.groups()
            self.service_calls.append((domain, service, req.body))
            changed = []
            for eid in req.body.get("entity_id", []):
                st = self.states[eid]
                if service == "turn_on":
                    st["state"] = "on"
                elif service == "turn_off":
                    st["state"] = "off"
                elif service == "toggle":
                    st["state"] = "off" if st["state"] == "on" else "on"
                changed.append(st)
            return 200, js, json.dumps(changed).encode()
        return 404, {}, b"not found"
