"""``POST /v1/embeddings``: one vector per input, float lists or base64 (little-endian float32)."""

from __future__ import annotations

import base64
import struct
from typing import Any

from quart import Blueprint, jsonify
from quart_schema import document_response, validate_request

from app.providers.base import Usage
from app.server.direct import direct_model
from app.server.errors import ApiError
from app.server.hardening import admit_request
from app.server.protocol_text import EmbeddingList, EmbeddingRequest
from app.server.tracking import track_usage

bp = Blueprint("embeddings", __name__)


def encode_vector(vector: list[float], encoding: str) -> list[float] | str:
    """``float``: the list; ``base64``: float32 little-endian bytes, base64 (as OpenAI sends)."""
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


@bp.post("/v1/embeddings")
@validate_request(EmbeddingRequest)
@document_response(EmbeddingList)
async def embeddings(data: EmbeddingRequest) -> Any:
    """Embeddings from the model (llama.cpp, Transformers or a remote row)."""
    target = await direct_model(data.model)
    async with await admit_request(target.model_id, target.model):
        vectors, tokens = await target.model.embed(data.inputs)
    if data.dimensions is not None and vectors and data.dimensions != len(vectors[0]):
        raise ApiError(400, f"dimensions={data.dimensions} is not supported: this model's "
                       f"embeddings have {len(vectors[0])} dimensions.", code="unsupported_value",
                       param="dimensions")
    track_usage(Usage(prompt_tokens=tokens))
    return jsonify({"object": "list", "model": target.model_id,
                    "data": [{"object": "embedding", "index": i,
                              "embedding": encode_vector(v, data.encoding_format)}
                             for i, v in enumerate(vectors)],
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
