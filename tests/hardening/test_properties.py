"""hypothesis properties: message normalisation, and parameter validation through the real server."""

from __future__ import annotations

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.server.messages import content_text, normalise_messages
from app.server.protocol import ChatMessageIn, has_text
from tests.conftest import LiveServer
from tests.fakes import Script

ROLES = ["system", "developer", "user", "assistant", "tool", "function"]
text = st.text(max_size=40)
part = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "input_text"]), "text": text}),
    st.fixed_dictionaries({"type": st.sampled_from(["image_url", "input_audio", "file"])},
                          optional={"text": text}),
)
content = st.one_of(st.none(), text, st.lists(part, max_size=4))
tool_call = st.fixed_dictionaries({"id": st.text(min_size=1, max_size=8), "type": st.just("function"),
                                   "function": st.fixed_dictionaries({"name": st.text(min_size=1, max_size=8),
                                                                      "arguments": text})})
message = st.fixed_dictionaries({"role": st.sampled_from(ROLES), "content": content},
                                optional={"name": st.text(max_size=8),
                                          "tool_calls": st.lists(tool_call, max_size=2),
                                          "tool_call_id": st.text(max_size=8)})


@settings(max_examples=300, deadline=None)
@given(st.lists(message, max_size=8))
def test_normalisation_keeps_order_text_and_maps_roles(raw: list[dict]) -> None:
    msgs = [ChatMessageIn.model_validate(m) for m in raw]
    out = normalise_messages(msgs)
    expected = []
    for m in msgs:
        role = {"developer": "system", "function": "tool"}.get(m.role, m.role)
        body = content_text(m.content)
        if has_text(body) or m.tool_calls or role == "tool":  # text by the API documents' rule
            expected.append((role, body))
    assert [(o.role, o.content) for o in out] == expected
    assert all(o.role in {"system", "user", "assistant", "tool"} for o in out)
    for o in out:  # only text parts survive, joined by newlines
        assert "image_url" not in o.content or any("image_url" in str(r) for r in raw)


NUMERIC = {"temperature": (0, 2), "top_p": (0, 1), "presence_penalty": (-2, 2),
           "frequency_penalty": (-2, 2)}
INTEGER = {"max_tokens": (1, None), "n": (1, 16), "top_logprobs": (0, 20)}
scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
json_value = st.recursive(scalar | st.text(max_size=10), lambda c: st.lists(c, max_size=3)
                          | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=6)


def _post(live: LiveServer, client: httpx.Client, body: dict) -> httpx.Response:
    return client.post(live.base_url + "/chat/completions", json=body)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(sorted(NUMERIC)), value=st.floats(min_value=-5, max_value=5))
def test_numeric_parameters_in_range_pass_and_out_of_range_name_the_parameter(
        scripted_server: LiveServer, script: Script, name: str, value: float) -> None:
    script.delay = 0.0
    lo, hi = NUMERIC[name]
    with httpx.Client(headers={"X-API-Key": scripted_server.key}, timeout=10) as c:
        r = _post(scripted_server, c, {"messages": [{"role": "user", "content": "x"}], "max_tokens": 1,
                                       name: value})
    if lo <= value <= hi:
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 400 and r.json()["error"]["param"] == name


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(sorted({*NUMERIC, *INTEGER, "stop", "stream", "messages", "model", "seed",
                                    "stream_options", "tools", "response_format", "user"})),
       value=json_value)
def test_any_json_value_for_any_parameter_is_a_reply_or_a_named_400(
        scripted_server: LiveServer, script: Script, name: str, value: object) -> None:
    script.delay = 0.0
    body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 1, name: value}
    if name == "max_tokens":
        body["max_completion_tokens"] = 1
    with httpx.Client(headers={"X-API-Key": scripted_server.key}, timeout=10) as c:
        r = _post(scripted_server, c, body)
    assert r.status_code in (200, 400, 404), r.text
    if r.status_code != 200:
        err = r.json()["error"]
        assert err["message"] and err["type"] == "invalid_request_error"
        if r.status_code == 400 and err["param"]:
            assert err["param"].split(".")[0].split("[")[0] in (name, "messages", "max_tokens")
    if isinstance(value, int) and not isinstance(value, bool) and name in INTEGER:
        lo, hi = INTEGER[name]
        in_range = value >= lo and (hi is None or value <= hi)
        assert (r.status_code == 200) == (in_range and not (name == "n" and value > 1))
