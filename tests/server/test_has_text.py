""""A message with text" means the same in the API documents and in the routes.

The documents say it with the JSON Schema pattern ``\\S`` (ECMA-262 whitespace); the routes test
it with :func:`has_text`.  Python's ``str.strip`` also removes the separators ``\\x1c``-``\\x1f``
and ``\\x85``: a request whose only text was such characters is valid by the document, and was
refused (found by the schemathesis suite, tests/hardening/test_fuzz_api.py).
"""

from __future__ import annotations

import pytest

from app.server.errors import ApiError
from app.server.messages import normalise_messages
from app.server.messages_request import chat_messages
from app.server.protocol import HAS_TEXT, ChatMessageIn, has_text
from app.server.protocol_messages import CountTokensRequest

SEPARATORS = ["\x1f\x1f", "\x1c", "\x85", "a"]
SPACES = ["", " ", "\t\n\r\v\f", "\u00a0\u2003\u3000\ufeff", "\u2028\u2029"]


def test_the_documents_pattern_is_ecma_whitespace() -> None:
    assert HAS_TEXT == {"type": "string", "pattern": r"\S"}
    assert all(has_text(t) for t in SEPARATORS)
    assert not any(has_text(t) for t in SPACES)


@pytest.mark.parametrize("text", SEPARATORS)
def test_separator_text_is_a_message_on_every_front_end(text: str) -> None:
    anthropic = CountTokensRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": text}]})
    assert [(m.role, m.content) for m in chat_messages(anthropic)] == [("user", text)]
    openai = normalise_messages([ChatMessageIn.model_validate({"role": "user", "content": text})])
    assert [(m.role, m.content) for m in openai] == [("user", text)]


@pytest.mark.parametrize("text", SPACES)
def test_whitespace_only_text_is_still_no_message(text: str) -> None:
    anthropic = CountTokensRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": text}]})
    with pytest.raises(ApiError) as refused:
        chat_messages(anthropic)
    assert refused.value.status == 400
    assert normalise_messages([ChatMessageIn.model_validate({"role": "user", "content": text})]) == []
