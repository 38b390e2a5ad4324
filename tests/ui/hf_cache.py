"""A real Hugging Face cache layout (blobs, refs, snapshot symlinks) built by hand, offline."""

from __future__ import annotations

import hashlib
from pathlib import Path


def cache_repo(cache: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """Put ``files`` into ``cache`` as repo ``repo_id`` at one revision; returns the snapshot."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(Path("../../blobs") / blob.name)
    return snapshot
