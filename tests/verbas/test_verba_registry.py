"""Discovery (built-ins, entry points, plugin files), flags, settings and secrets."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import Field

from app.hydra import HydraAgent, Origin
from app.keystore import SERVICE, SecretStore
from app.providers.base import ChatMessage, ChatRequest
from app.settings import SettingsStore
from app.verbas import (
    PluginProblem,
    SettingField,
    Verba,
    VerbaRegistry,
    secret_entry,
    set_enabled,
    set_setting,
    verba,
)
from tests.conftest import MemoryKeyring
from tests.fakes import ScriptedModel
from tests.hydra.support import CHAT_PLAN

GOOD_PLUGIN = '''
from app.verbas import verba

@verba(id="echo", name="Echo", description="Repeats text.", default_enabled=True)
def echo(text: str) -> str:
    return text
'''

EP_MODULE = '''
from app.verbas import verba

@verba(id="weather", name="Weather", description="Tells the weather.",
       when_to_use="the user asks about the weather.", default_enabled=True)
def weather(city: str) -> str:
    return f"Sunny in {city}"
'''


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A dist-info with a ``tater.verbas`` entry point (and a broken one) on sys.path."""
    site = tmp_path / "site"
    dist = site / "tater_weather-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tater-weather\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[tater.verbas]\nweather = tater_weather_plugin:weather\n"
        "ghost = tater_missing_module:thing\n")
    (site / "tater_weather_plugin.py").write_text(EP_MODULE)
    monkeypatch.syspath_prepend(str(site))
    return site


def test_plugin_file_with_syntax_error_is_reported_and_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "verbas"
    folder.mkdir()
    (folder / "broken.py").write_text("def oops(:\n    pass\n")
    (folder / "good.py").write_text(GOOD_PLUGIN)
    (folder / "raises.py").write_text("raise SystemExit('nope')\n")
    reg = VerbaRegistry.discover(tmp_path, entry_points=False)
    assert reg.get("echo") is not None and reg.get("echo").source == "plugin file good.py"
    assert [p.name for p in reg.problems] == ["plugin file broken.py", "plugin file raises.py"]
    assert reg.problems[0].error.startswith("SyntaxError:") and "line 1" in reg.problems[0].error
    assert reg.problems[1].error == "SystemExit: nope"
    assert {v.id for v in reg.all()} == {"clock", "calculator", "home_assistant", "web_fetch", "echo"}


async def test_entry_point_plugin_is_offered(installed_plugin: Path, tmp_path: Path) -> None:
    assert any(ep.name == "weather" for ep in importlib.metadata.entry_points(group="tater.verbas"))
    reg = VerbaRegistry.discover(None)
    weather = reg.get("weather")
    assert weather is not None and weather.source == "entry point weather (tater-weather)"
    assert PluginProblem("entry point ghost (tater-weather)",
                         "ModuleNotFoundError: No module named 'tater_missing_module'") in reg.problems

    store = SettingsStore(tmp_path / "cfg", env={})
    store.update(hydra_tools_allowed=True)
    model = ScriptedModel([CHAT_PLAN, "ok"])
    await HydraAgent(store, reg, None).complete(
        model, ChatRequest([ChatMessage("user", "Weather in Oslo?")]), Origin("s"))
    planner = model.calls[0]
    assert "weather" in planner.response_format["json_schema"]["schema"]["properties"]["steps"][
        "items"]["properties"]["verba"]["enum"]
    assert "weather: Weather. Tells the weather. Use it when: the user asks about the weather." in \
        planner.messages[0].content


def test_duplicate_id_reported(tmp_path: Path) -> None:
    folder = tmp_path / "verbas"
    folder.mkdir()
    (folder / "clock2.py").write_text(GOOD_PLUGIN.replace('"echo"', '"clock"'))
    (folder / "empty.py").write_text("X = 1\n")
    reg = VerbaRegistry.discover(tmp_path, entry_points=False)
    assert reg.get("clock").source == "builtin"
    assert reg.problems == [
        PluginProblem("plugin file clock2.py", "Verba id 'clock' is already provided by builtin"),
        PluginProblem("plugin file empty.py", "no Verba found (define a Verba object or a VERBAS list)"),
    ]


def test_flags_defaults_and_persistence(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path, env={})
    reg = VerbaRegistry.discover(None, entry_points=False)
    assert [v.id for v in reg.enabled(store.current)] == ["clock", "calculator"]
    set_enabled(store, "calculator", False)
    set_enabled(store, "web_fetch", True)
    again = SettingsStore(tmp_path, env={})  # persisted
    assert again.current.verbas == {"calculator": {"enabled": False}, "web_fetch": {"enabled": True}}
    assert [v.id for v in reg.enabled(again.current)] == ["clock", "web_fetch"]


def test_secret_settings_go_to_keyring(tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    store = SettingsStore(tmp_path, env={})
    reg = VerbaRegistry.discover(None, entry_points=False)
    ha = reg.get("home_assistant")
    secrets = SecretStore()
    set_enabled(store, "home_assistant", True)
    assert reg.missing_settings(ha, store.current, secrets) == ["Home Assistant URL",
                                                                "Long-lived access token"]
    set_setting(store, secrets, ha, "url", "http://ha.local:8123")
    set_setting(store, secrets, ha, "token", "secret-token")
    assert memory_keyring.store[(SERVICE, secret_entry("home_assistant", "token"))] == "secret-token"
    assert "secret-token" not in store.path.read_text()
    assert ha in reg.enabled(store.current, secrets)
    ctx = reg.context(ha, Origin("s"), store.current, secrets, 5.0)
    assert ctx.setting("url") == "http://ha.local:8123" and ctx.secret("token") == "secret-token"
    set_setting(store, secrets, ha, "token", "")
    assert (SERVICE, "verba:home_assistant:token") not in memory_keyring.store


def test_schema_from_signature_and_json_schema() -> None:
    @verba(id="lamp", name="Lamp", description="d")
    def lamp(room: Annotated[str, Field(description="Room")], level: int = 50,
             mode: Literal["warm", "cold"] = "warm") -> str:
        return room

    assert lamp.parameters == {
        "type": "object", "additionalProperties": False, "required": ["room"],
        "properties": {"room": {"type": "string", "description": "Room"},
                       "level": {"type": "integer", "default": 50},
                       "mode": {"type": "string", "enum": ["warm", "cold"], "default": "warm"}}}
    assert lamp.validate({"room": "den"}) == {"room": "den", "level": 50, "mode": "warm"}

    given = Verba(id="raw", name="Raw", description="d", handler=lambda q: q,
                  parameters={"type": "object", "properties": {"q": {"type": "string"}},
                              "required": ["q"]},
                  settings=(SettingField("k", "Key", secret=True),))
    assert given.validate({"q": "x"}) == {"q": "x"} and not given.wants_ctx


def test_reserved_argument_names_rejected() -> None:
    with pytest.raises(ValueError, match="reserved"):
        @verba(id="bad", name="Bad", description="d")
        def bad(user: str) -> str:
            return user
    with pytest.raises(ValueError, match="lower-case"):
        Verba(id="Bad Id", name="x", description="d", handler=print,
              parameters={"type": "object"})


async def test_invoke_sync_async_and_errors() -> None:
    from app.verbas import VerbaContext, VerbaError, VerbaResult

    @verba(id="a", name="A", description="d")
    async def a(x: int) -> VerbaResult:
        return VerbaResult.success(f"got {x}", {"x": x})

    @verba(id="b", name="B", description="d")
    def b() -> dict:
        raise VerbaError("no luck")

    @verba(id="c", name="C", description="d")
    def c() -> dict:
        return {"k": 1}

    reg = VerbaRegistry([a, b, c])
    ctx = VerbaContext(origin=Origin("s"))
    assert (await reg.invoke(a, {"x": 3}, ctx, 1)).data == {"x": 3}
    failed = await reg.invoke(b, {}, ctx, 1)
    assert not failed.ok and failed.error == "no luck"
    assert (await reg.invoke(c, {}, ctx, 1)).data == {"k": 1}
