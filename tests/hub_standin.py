"""A stand-in for the Hugging Face Hub on localhost, for the real ``huggingface_hub`` client.

It serves the endpoints the client uses to search (``/api/models``), describe a repository
with file sizes and LFS checksums (``/api/models/<repo>/revision/<rev>?blobs=true``, and the
``tree`` listing ``snapshot_download`` reads) and fetch
files (``HEAD``/``GET /<repo>/resolve/<rev>/<file>``, with ``Range``), with the Hub's headers
(``X-Repo-Commit``, ``ETag``, ``X-Error-Code`` for gated and missing repositories: a gated
file answers 401 without a token and 403 with a token that was not granted access).

``drop_once`` names files whose first full ``GET`` is cut off half-way (the connection is
closed after half the bytes), as a flaky network would; every request is recorded in ``seen``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from tests.conftest import serve_http

GGUF_REPO = "tater-tests/Tiny-Chat-GGUF"
FOLDER_REPO = "tater-tests/Tiny-Llama"
GATED_REPO = "tater-tests/Gated-GGUF"
GATED_TOKEN = "hf_test_token_0123456789"
PLENTY = 64 << 30  # bytes of memory to claim when a test wants everything to fit


@dataclass
class Repo:
    """One model repository: its files (name -> bytes), tags, and who may read it."""

    repo_id: str
    files: dict[str, bytes]
    tags: list[str] = field(default_factory=list)
    gated: bool = False
    token: str | None = None  # the token that may read a gated repository
    downloads: int = 0
    commit: str = ""

    def __post_init__(self) -> None:
        digest = hashlib.sha1(self.repo_id.encode()).hexdigest()
        self.commit = self.commit or digest

    def sibling(self, name: str) -> dict[str, Any]:
        data = self.files[name]
        entry: dict[str, Any] = {"rfilename": name, "size": len(data),
                                 "blobId": hashlib.sha1(data).hexdigest()}
        if name.endswith((".gguf", ".safetensors")):
            entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                            "pointerSize": 134}
        return entry

    def tree_entry(self, name: str) -> dict[str, Any]:
        """The file as ``/api/models/<repo>/tree/<rev>`` lists it."""
        sibling = self.sibling(name)
        entry: dict[str, Any] = {"type": "file", "path": name, "size": sibling["size"],
                                 "oid": sibling["blobId"]}
        if "lfs" in sibling:
            entry["lfs"] = {"oid": sibling["lfs"]["sha256"], "size": sibling["size"],
                            "pointerSize": 134}
        return entry


@dataclass
class Seen:
    method: str
    path: str
    range: str | None
    authorization: str | None


class HubStandIn:
    """The stand-in's state; :func:`serve_hub` runs it."""

    def __init__(self, repos: list[Repo]) -> None:
        self.repos = {r.repo_id: r for r in repos}
        self.drop_once: set[str] = set()  # "repo/file" whose first full GET is cut off
        self.throttle = 0.0  # seconds to wait after each 64 KiB of a file (a slow network)
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    def card(self, repo: Repo, *, files: bool) -> dict[str, Any]:
        data: dict[str, Any] = {"id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.commit,
                                "downloads": repo.downloads, "likes": 0, "tags": repo.tags,
                                "gated": "manual" if repo.gated else False, "private": False,
                                "pipeline_tag": "text-generation"}
        if files:
            data["siblings"] = [repo.sibling(n) for n in sorted(repo.files)]
        return data


def _handler(hub: HubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                  head: bool = False) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if "Content-Length" not in (headers or {}):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

        def _json(self, data: Any) -> None:
            self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"})

        def _error(self, status: int, code: str, message: str, head: bool = False) -> None:
            body = json.dumps({"error": message}).encode()
            self._send(status, body, {"Content-Type": "application/json", "X-Error-Code": code,
                                      "X-Error-Message": message}, head)

        def do_HEAD(self) -> None:
            self._route(head=True)

        def do_GET(self) -> None:
            self._route(head=False)

        def _route(self, head: bool) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            with hub.lock:
                hub.seen.append(Seen(self.command, path, self.headers.get("Range"),
                                     self.headers.get("Authorization")))
            if path == "/api/models":
                self._search(parse_qs(url.query))
                return
            m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/[^/]+", path)
            if m and m.group(1) in hub.repos:
                self._json([hub.repos[m.group(1)].tree_entry(n)
                            for n in sorted(hub.repos[m.group(1)].files)])
                return
            m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?", path)
            if m:
                repo = hub.repos.get(m.group(1))
                if repo is None:
                    self._error(401, "RepoNotFound", "Repository not found")
                else:
                    self._json(hub.card(repo, files=True))
                return
            m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if m:
                self._file(m.group(1), m.group(3), head)
                return
            self._error(404, "EntryNotFound", f"no route {path}", head)

        def _search(self, query: dict[str, list[str]]) -> None:
            text = (query.get("search") or [""])[0].lower()
            wanted = set(query.get("filter") or [])
            hits = [r for r in hub.repos.values()
                    if text in r.repo_id.lower() and wanted <= set(r.tags)]
            hits.sort(key=lambda r: -r.downloads)
            limit = int((query.get("limit") or ["1000"])[0])
            self._json([hub.card(r, files=False) for r in hits[:limit]])

        def _file(self, repo_id: str, name: str, head: bool) -> None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(401, "RepoNotFound", "Repository not found", head)
                return
            auth = self.headers.get("Authorization")
            if repo.gated and auth != f"Bearer {repo.token}":
                if auth:  # as the Hub: a token whose account has not been granted access
                    self._error(403, "GatedRepo", f"Access to model {repo_id} is restricted and "
                                "you are not in the authorized list.", head)
                else:
                    self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You "
                                "must have access to it and be authenticated to access it.", head)
                return
            if name not in repo.files:
                self._error(404, "EntryNotFound", f"{name} does not exist", head)
                return
            data = repo.files[name]
            etag = hashlib.sha256(data).hexdigest()
            headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{etag}"',
                       "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
            start = 0
            rng = self.headers.get("Range")
            if rng:
                start = int(re.fullmatch(r"bytes=(\d+)-\d*", rng).group(1))  # type: ignore[union-attr]
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            headers["Content-Length"] = str(len(data) - start)
            key = f"{repo_id}/{name}"
            cut = not head and not rng and key in hub.drop_once
            if cut:
                hub.drop_once.discard(key)
                self._send(206 if rng else 200, b"", headers, head=True)
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            if head or not hub.throttle:
                self._send(206 if rng else 200, data[start:], headers, head)
                return
            self._send(206 if rng else 200, b"", headers, head=True)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                for at in range(start, len(data), 64 * 1024):
                    self.wfile.write(data[at:at + 64 * 1024])
                    self.wfile.flush()
                    time.sleep(hub.throttle)

    return Handler


@contextlib.contextmanager
def serve_hub(repos: list[Repo]) -> Iterator[tuple[str, HubStandIn]]:
    """Run the stand-in on 127.0.0.1:<free port>; yield (endpoint URL, state)."""
    hub = HubStandIn(repos)
    with serve_http(_handler(hub)) as url:
        yield url, hub


def folder_files(folder: Path) -> dict[str, bytes]:
    """A model folder's files as a repository's files."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def hub(tmp_path: Path, tiny_gguf: Path, tiny_hf_folder: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandIn]:
    """The stand-in Hub with a GGUF repo (two quantisations), a model folder and a gated repo;
    ``HF_ENDPOINT`` points at it and the Hugging Face cache is a temporary folder."""
    import huggingface_hub.constants

    data = tiny_gguf.read_bytes()
    repos = [
        Repo(GGUF_REPO, {"tiny-chat-Q8_0.gguf": data, "tiny-chat-F32.gguf": data + bytes(4096),
                         "mmproj-tiny-f16.gguf": b"GGUF" + bytes(32), "README.md": b"# tiny"},
             tags=["gguf", "text-generation"], downloads=10),
        Repo(FOLDER_REPO, folder_files(tiny_hf_folder), tags=["safetensors", "llama"], downloads=5),
        Repo(GATED_REPO, {"gated-Q4_0.gguf": data}, tags=["gguf"], gated=True, token=GATED_TOKEN),
    ]
    with serve_hub(repos) as (endpoint, state):
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        # the client writes (and can resume from) whole chunks: 10 MB by default, more than
        # these tiny files, so smaller chunks make the half-way drop land after some of them
        monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
        yield state
