# ruff: noqa: F811 - pytest fixtures are imported by name
"""The remote provider against a real OpenAI-compatible peer (llama_cpp.server) and bad peers."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from app.keystore import SERVICE
from app.providers import get_provider
from app.providers.base import ChatMessage, ChatRequest, Usage
from app.providers.remote import RemoteChatModel, RemoteProvider, api_key_entry, build_body
from app.providers.upstream import UpstreamError
from tests.providers.peer_fixtures import (  # noqa: F401 - fixtures
    Peer,
    llama_peer,
    refusing_port,
    silent_port,
)

MESSAGES = [ChatMessage("user", "Tell me about the sea.")]


def req(**kw: object) -> ChatRequest:
    kw.setdefault("temperature", 0.0)
    kw.setdefault("max_tokens", 12)
    return ChatRequest(messages=list(MESSAGES), **kw)  # type: ignore[arg-type]


def peer_model(peer: Peer, *, key: str | None = None,
               **options: object) -> RemoteChatModel:
    provider = RemoteProvider()
    row = provider.row_for(peer.model, base_url=peer.base_url, **options)
    if key:
        provider.set_api_key(row.id, key)
    return provider.load(row)


# -- rows -------------------------------------------------------------------------------

def test_row_ids_and_options() -> None:
    provider = get_provider("remote")
    assert isinstance(provider, RemoteProvider) and not provider.local
    assert provider.label == "Remote (OpenAI-compatible)"
    row = RemoteProvider.row_for("llama3.2:1b", base_url="http://127.0.0.1:11434", timeout=30)
    assert row.id == "remote::127.0.0.1:11434::llama3.2:1b"
    assert row.provider == "remote" and row.source == "llama3.2:1b"
    assert row.options == {"base_url": "http://127.0.0.1:11434/v1", "timeout": 30}
    https = RemoteProvider.row_for("gpt", base_url="https://example.org/api/v1/")
    assert https.id == "remote::example.org:443::gpt"
    assert https.options["base_url"] == "https://example.org/api/v1"
    with pytest.raises(ValueError, match="base_url"):
        RemoteProvider.row_for("m")
    with pytest.raises(ValueError, match="http"):
        RemoteProvider.row_for("m", base_url="ftp://host/v1")


def test_bad_row_options_fail_to_load() -> None:
    from app.providers.base import ModelLoadError
    from app.settings import ModelRow

    row = ModelRow(id="remote::x::m", provider="remote", source="m", options={})
    with pytest.raises(ModelLoadError, match="base_url"):
        RemoteProvider().load(row)
    row.options = {"base_url": "http://127.0.0.1:1/v1", "timeout": -1}
    with pytest.raises(ModelLoadError, match="timeout"):
        RemoteProvider().load(row)


def test_api_key_lives_in_the_keyring_one_entry_per_row(memory_keyring: object) -> None:
    provider = RemoteProvider()
    a = provider.row_for("m", base_url="http://127.0.0.1:1234/v1")
    b = provider.row_for("m", base_url="http://127.0.0.1:1337/v1")
    provider.set_api_key(a.id, "key-a")
    provider.set_api_key(b.id, "key-b")
    store = memory_keyring.store  # type: ignore[attr-defined]
    assert store[(SERVICE, api_key_entry(a.id))] == "key-a"
    assert store[(SERVICE, f"remote:{b.id}")] == "key-b"
    assert "key-a" not in a.model_dump_json()
    provider.set_api_key(a.id, None)
    assert (SERVICE, api_key_entry(a.id)) not in store


def test_request_fields_pass_through() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    body = build_body("up", req(tools=tools, tool_choice="auto", stop=["x"], seed=3,
                                response_format={"type": "json_object"}, logprobs=True,
                                top_logprobs=2), include_usage=True)
    assert body["model"] == "up" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["tools"] == tools and body["tool_choice"] == "auto"
    assert body["response_format"] == {"type": "json_object"}
    assert body["stop"] == ["x"] and body["seed"] == 3 and body["max_tokens"] == 12
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    plain = build_body("up", req(max_tokens=None), include_usage=False)
    for absent in ("tools", "tool_choice", "response_format", "stop", "seed", "max_tokens",
                   "stream_options", "logprobs"):
        assert absent not in plain


# -- against the real peer ---------------------------------------------------------------

async def test_streams_from_a_real_peer(llama_peer: Peer) -> None:
    model = peer_model(llama_peer, key=llama_peer.key)
    try:
        chunks = [c async for c in model.stream(req())]
        whole = await model.complete(req())
    finally:
        await model.aclose()
    deltas = [c.text for c in chunks if c.text]
    assert len(deltas) >= 5
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].usage == Usage(0, 0)  # llama_cpp.server sends no usage chunk
    assert "".join(deltas) == whole.text
    direct = httpx.post(f"{llama_peer.base_url}/chat/completions", timeout=30,
                        headers={"Authorization": f"Bearer {llama_peer.key}"},
                        json={"model": "tiny", "messages": [m.to_dict() for m in MESSAGES],
                              "max_tokens": 12, "temperature": 0}).json()
    assert whole.text == direct["choices"][0]["message"]["content"]


async def test_stop_and_response_format_reach_the_peer(llama_peer: Peer) -> None:
    model = peer_model(llama_peer, key=llama_peer.key)
    try:
        base = (await model.complete(req(max_tokens=16))).text
        word = base.split()[3]
        stopped = await model.complete(req(max_tokens=16, stop=[word]))
        schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
                  "additionalProperties": False}
        as_json = await model.complete(req(max_tokens=100, response_format={
            "type": "json_object", "schema": schema}))
    finally:
        await model.aclose()
    assert stopped.finish_reason == "stop"
    assert word not in stopped.text and base.startswith(stopped.text)
    assert isinstance(json.loads(as_json.text)["ok"], bool)  # the peer's grammar made it JSON


async def test_upstream_401_names_the_upstream(llama_peer: Peer) -> None:
    for key in (None, "wrong-key-0123456789"):
        model = peer_model(llama_peer, key=key)
        with pytest.raises(UpstreamError) as err:
            await model.complete(req())
        assert err.value.status == 401 and err.value.code == "upstream_unauthorized"
        assert llama_peer.base_url in err.value.message and "Invalid API key" in err.value.message
        await model.aclose()


async def test_upstream_404_passes_through(llama_peer: Peer) -> None:
    provider = RemoteProvider()
    row = provider.row_for("tiny", base_url=f"http://127.0.0.1:{llama_peer.port}/nope")
    provider.set_api_key(row.id, llama_peer.key)
    model = provider.load(row)
    with pytest.raises(UpstreamError) as err:
        await model.complete(req())
    assert err.value.status == 404 and "/nope/chat/completions" in err.value.message


async def test_connection_refused_is_502(refusing_port: int) -> None:
    model = RemoteProvider().load(RemoteProvider.row_for(
        "m", base_url=f"http://127.0.0.1:{refusing_port}/v1"))
    with pytest.raises(UpstreamError) as err:
        await model.complete(req())
    assert err.value.status == 502 and err.value.code == "upstream_unreachable"
    assert f"127.0.0.1:{refusing_port}" in err.value.message


async def test_silent_upstream_times_out_as_504(silent_port: int) -> None:
    model = RemoteProvider().load(RemoteProvider.row_for(
        "m", base_url=f"http://127.0.0.1:{silent_port}/v1", timeout=0.5))
    t0 = time.monotonic()
    with pytest.raises(UpstreamError) as err:
        await model.complete(req())
    assert err.value.status == 504 and err.value.code == "upstream_timeout"
    assert time.monotonic() - t0 < 5


# -- logic around the wire (local stand-ins) -----------------------------------------------

async def test_closing_the_stream_closes_the_upstream_response() -> None:
    """A slow SSE server that notices when the client hangs up."""
    hung_up = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")
        try:
            for i in range(1000):
                event = json.dumps({"choices": [{"index": 0, "delta": {"content": f" w{i}"}}]})
                data = f"data: {event}\n\n".encode()
                writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                await writer.drain()
                if await _eof_within(reader, 0.05):
                    break
        except (ConnectionError, OSError):
            pass
        hung_up.set()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    model = RemoteProvider().load(RemoteProvider.row_for("m", base_url=f"http://127.0.0.1:{port}/v1"))
    stream = model.stream(req())
    first = [await stream.__anext__() for _ in range(3)]
    assert [c.text for c in first] == [" w0", " w1", " w2"]
    await stream.aclose()
    await model.aclose()
    await asyncio.wait_for(hung_up.wait(), 5)
    server.close()


async def _eof_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), seconds) == b""
    except TimeoutError:
        return False


def _mock_model(handler: object) -> RemoteChatModel:
    return RemoteChatModel("remote::t::m", base_url="http://upstream.test/v1", upstream_model="m",
                           transport=httpx.MockTransport(handler))  # type: ignore[arg-type]


def _sse(*events: object) -> bytes:
    return b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


async def test_usage_tool_calls_and_stream_options_fallback() -> None:
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if "stream_options" in body:
            return httpx.Response(400, json={"error": {"message": "unknown field stream_options"}})
        return httpx.Response(200, content=_sse(
            {"choices": [{"index": 0, "delta": {"content": "Hi"}}]},
            {"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{\"a\""}}]}}]},
            {"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"arguments": ": 1}"}}]}, "finish_reason": "tool_calls"}]},
            {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}}))

    model = _mock_model(handler)
    result = await model.complete(req())
    assert result.text == "Hi" and result.finish_reason == "tool_calls"
    assert result.usage == Usage(5, 3)
    assert result.tool_calls == [{"id": "call_1", "type": "function",
                                  "function": {"name": "f", "arguments": "{\"a\": 1}"}}]
    assert "stream_options" in bodies[0] and "stream_options" not in bodies[1]
    await model.complete(req())
    assert "stream_options" not in bodies[-1]  # remembered


@pytest.mark.parametrize(("status", "expected"), [(403, 403), (429, 502), (500, 502), (503, 502)])
async def test_other_upstream_errors(status: int, expected: int) -> None:
    model = _mock_model(lambda r: httpx.Response(status, json={"error": {"message": f"boom {status}"}}))
    with pytest.raises(UpstreamError) as err:
        await model.complete(req())
    assert err.value.status == expected
    assert f"boom {status}" in err.value.message and "http://upstream.test/v1" in err.value.message


async def test_stream_cut_short_is_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n')

    with pytest.raises(UpstreamError, match="closed the stream"):
        await _mock_model(handler).complete(req())


# -- chained: this app's own server as the upstream ---------------------------------------

async def test_chained_through_this_apps_own_server(llama_server: object) -> None:
    """A remote row pointing at a running Tater (serving the tiny GGUF) answers like it."""
    live = llama_server
    provider = RemoteProvider()
    row = provider.row_for(live.settings.current.active_model,  # type: ignore[attr-defined]
                           base_url=live.base_url)  # type: ignore[attr-defined]
    provider.set_api_key(row.id, live.key)  # type: ignore[attr-defined]
    model = provider.load(row)
    try:
        chunks = [c async for c in model.stream(req(max_tokens=8))]
        direct = live.client().chat.completions.create(  # type: ignore[attr-defined]
            model=row.source, messages=[m.to_dict() for m in MESSAGES], max_tokens=8,
            temperature=0)
    finally:
        await model.aclose()
    assert len([c for c in chunks if c.text]) >= 3
    assert "".join(c.text for c in chunks) == direct.choices[0].message.content
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].usage == Usage(direct.usage.prompt_tokens, 8)
    provider.set_api_key(row.id, "tater-wrong-key-0123456789")
    wrong = provider.load(row)
    with pytest.raises(UpstreamError) as err:
        await wrong.complete(req())
    assert err.value.status == 401 and live.base_url in err.value.message  # type: ignore[attr-defined]
