"""One render per request: the prompt memo on its own, then a real request through the server."""

from __future__ import annotations

from typing import Any

from app.providers.base import ChatMessage
from app.providers.prompt_memo import PromptMemo
from tests.conftest import LiveServer


def test_the_same_message_objects_are_rendered_once_and_others_again() -> None:
    memo, calls = PromptMemo(size=2), []

    def make(tag: int) -> Any:
        return lambda: calls.append(tag) or [tag, tag]

    messages = [ChatMessage("user", "hi")]
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert memo.ids(messages, tools, make(1)) == [1, 1]
    assert memo.ids(list(messages), tools, make(2)) == [1, 1]  # a new list of the same messages
    assert memo.ids([ChatMessage("user", "hi")], tools, make(3)) == [3, 3]  # equal, not the same
    assert memo.ids(messages, None, make(4)) == [4, 4]  # other tools
    assert memo.ids(messages, tools, make(5), extra=("enable_thinking", True)) == [5, 5]
    assert calls == [1, 3, 4, 5]
    assert memo.ids(messages, tools, make(6)) == [6, 6]  # size 2: the first entry is gone
    returned = memo.ids(messages, tools, make(7))
    returned.append(0)  # callers get their own list
    assert memo.ids(messages, tools, make(8)) == [6, 6]


def test_a_chat_request_renders_its_prompt_once(llama_server: LiveServer) -> None:
    row_id = llama_server.settings.current.active_model
    model = llama_server.services.hub.load(row_id).result(timeout=60)  # type: ignore[attr-defined]
    renders = []
    original = model.render_prompt

    def counting(*args: Any, **kwargs: Any) -> Any:
        renders.append(args)
        return original(*args, **kwargs)

    model.render_prompt = counting
    client = llama_server.client()
    for stream in (False, True):
        renders.clear()
        reply = client.chat.completions.create(
            model="tater/direct", messages=[{"role": "user", "content": "count me once"}],
            max_tokens=4, temperature=0, stream=stream)
        if stream:
            list(reply)  # type: ignore[arg-type]
        assert len(renders) == 1, f"the prompt was rendered {len(renders)} times (stream={stream})"
