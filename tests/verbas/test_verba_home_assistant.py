"""The home_assistant Verba against a local server implementing the REST endpoints it uses."""

from __future__ import annotations

import pytest

from app.verbas import Origin, VerbaContext, VerbaError
from app.verbas.builtin.home_assistant import home_assistant
from tests.hydra.support import HA_TOKEN, FakeHomeAssistant, Seen, http_server


def ctx(url: str, token: str | None = HA_TOKEN) -> VerbaContext:
    return VerbaContext(origin=Origin("s"), settings={"url": url}, secrets={"token": token},
                        timeout=10)


async def test_area_brightness_colour() -> None:
    ha = FakeHomeAssistant()
    with http_server(ha) as (url, _):
        result = await home_assistant.handler(ctx(url), action="turn_on", target="Kitchen",
                                              brightness=40, color="#ff8000")
    assert ha.service_calls == [("light", "turn_on", {"entity_id": ["light.kitchen"],
                                                      "brightness_pct": 40,
                                                      "rgb_color": [255, 128, 0]})]
    assert result.summary == "Turned on Kitchen Ceiling (light.kitchen) at 40% brightness in #ff8000."


async def test_area_covers_lights_and_switches() -> None:
    ha = FakeHomeAssistant()
    with http_server(ha) as (url, _):
        await home_assistant.handler(ctx(url), action="turn_off", target="office")
        await home_assistant.handler(ctx(url), action="toggle", target="switch.office_fan")
    assert ha.service_calls == [
        ("light", "turn_off", {"entity_id": ["light.office"]}),
        ("switch", "turn_off", {"entity_id": ["switch.office_fan"]}),
        ("switch", "toggle", {"entity_id": ["switch.office_fan"]}),
    ]
    assert ha.states["switch.office_fan"]["state"] == "on"


async def test_scene_and_list_states() -> None:
    ha = FakeHomeAssistant()
    with http_server(ha) as (url, _):
        scene = await home_assistant.handler(ctx(url), action="activate_scene", target="movie night")
        listed = await home_assistant.handler(ctx(url), action="list_states")
    assert ha.service_calls[0] == ("scene", "turn_on", {"entity_id": ["scene.movie_night"]})
    assert scene.summary == "Activated scene Movie Night (scene.movie_night)."
    assert "Office Light (light.office): off" in listed.summary
    assert "sensor.temp" not in listed.summary


async def test_errors_are_clear() -> None:
    ha = FakeHomeAssistant()
    with http_server(ha) as (url, _):
        with pytest.raises(VerbaError, match="refused the access token"):
            await home_assistant.handler(ctx(url, "wrong"), action="list_states")
        with pytest.raises(VerbaError, match="no light or switch matches 'garage'"):
            await home_assistant.handler(ctx(url), action="turn_on", target="garage")
        with pytest.raises(VerbaError, match="needs a target"):
            await home_assistant.handler(ctx(url), action="turn_on")
    with pytest.raises(VerbaError, match="not configured"):
        await home_assistant.handler(ctx(url, None), action="list_states")
    with pytest.raises(VerbaError, match="cannot reach Home Assistant"):
        await home_assistant.handler(ctx("http://127.0.0.1:9"), action="list_states")
    assert not home_assistant.default_enabled and home_assistant.acts_on_world


async def test_names_without_template_api() -> None:
    """A Home Assistant that refuses /api/template still resolves "office lights" by name."""
    ha = FakeHomeAssistant()

    def no_templates(req: Seen) -> tuple[int, dict[str, str], bytes]:
        return (404, {}, b"") if req.path == "/api/template" else ha(req)

    with http_server(no_templates) as (url, _):
        result = await home_assistant.handler(ctx(url), action="turn_on", target="office lights")
    assert ha.service_calls == [("light", "turn_on", {"entity_id": ["light.office"]})]
    assert result.data["new_states"] == [{"entity_id": "light.office", "state": "on"}]
