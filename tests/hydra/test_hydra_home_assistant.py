""""Turn on the office lights." end to end: scripted model, real Verba, local HA server."""

from __future__ import annotations

from app.hydra import HydraAgent, Origin, StepRecord
from app.keystore import SecretStore
from app.providers.base import ChatMessage, ChatRequest
from app.settings import SettingsStore
from app.verbas import VerbaRegistry, secret_entry
from tests.fakes import ScriptedModel
from tests.hydra.support import HA_TOKEN, FakeHomeAssistant, call, http_server, plan


async def test_turn_on_the_office_lights(store: SettingsStore,
                                         registry: VerbaRegistry, origin: Origin) -> None:
    ha = FakeHomeAssistant()
    secrets = SecretStore()
    secrets.set(secret_entry("home_assistant", "token"), HA_TOKEN)
    with http_server(ha) as (url, seen):
        store.update(verbas={"home_assistant": {"enabled": True, "url": url}})
        model = ScriptedModel([
            plan(("home_assistant", "turn on the office lights")),
            call("home_assistant", action="turn_on", target="office lights"),
            "Done: I turned on the Office Light.",
        ])
        agent = HydraAgent(store, registry, secrets)
        result, report = await agent.complete(
            model, ChatRequest([ChatMessage("user", "Turn on the office lights.")]), origin)

    assert ha.service_calls == [("light", "turn_on", {"entity_id": ["light.office"]})]
    service_req = next(r for r in seen if r.path == "/api/services/light/turn_on")
    assert service_req.headers["authorization"] == f"Bearer {HA_TOKEN}"
    assert ha.states["light.office"]["state"] == "on"
    assert ha.states["switch.office_fan"]["state"] == "off"  # "lights" means lights only
    assert report.steps == [StepRecord("home_assistant", True,
                                       "Turned on Office Light (light.office).")]
    assert "Home Assistant (ok): Turned on Office Light (light.office)." in model.system(2)
    assert result.text == "Done: I turned on the Office Light."
    assert "home_assistant" in model.calls[0].response_format["json_schema"]["schema"][
        "properties"]["steps"]["items"]["properties"]["verba"]["enum"]


async def test_home_assistant_not_offered_until_configured(store: SettingsStore,
                                                           registry: VerbaRegistry, origin: Origin) -> None:
    store.update(verbas={"home_assistant": {"enabled": True, "url": "http://127.0.0.1:9"}})
    model = ScriptedModel(['{"action": "chat", "steps": []}', "ok"])
    await HydraAgent(store, registry, SecretStore()).complete(
        model, ChatRequest([ChatMessage("user", "lights on")]), origin)
    enum = model.calls[0].response_format["json_schema"]["schema"]["properties"]["steps"][
        "items"]["properties"]["verba"]["enum"]
    assert enum == ["clock", "calculator"]  # no token in the keyring yet
