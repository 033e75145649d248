"""The store backend every replica shares: a flat key → bytes object store (`ObjectStore`), with two
implementations, a directory (`dir_objects.DirectoryObjects`: local disk or a shared volume) and an
S3-compatible bucket (`s3_objects.S3Objects`). `VoiceStore` keeps all voice logic on top of it.

What a backend promises: `write` and `create` replace or make an object whole (a reader sees the old bytes
or the new, never a part); `create` is conditional (only if the key is absent, atomically across
processes and machines: the one way two replicas can race for a voice id and get one winner); reads see
every completed write at once (no caching in the backend). A backend that cannot be reached, or answers
with an error, raises `VoiceStoreUnavailable` (HTTP 503) with a message naming the store and the cause.

`probe_conditional_create` checks at start-up that `create` really refuses an existing key (some S3
servers ignore `If-None-Match`).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Protocol

from .errors import VoiceStoreUnavailable


class ObjectStore(Protocol):
    where: str  # for messages and logs: a path or s3://bucket/prefix

    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such key."""

    def write(self, key: str, data: bytes) -> None:
        """Make or replace the object atomically."""

    def create(self, key: str, data: bytes) -> bool:
        """Make the object only if `key` is absent (atomically); False when it exists."""

    def delete(self, key: str) -> None:
        """Remove the object; an absent key is fine."""

    def keys(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix` (a folder-like prefix ending in `/`), sorted."""


def probe_conditional_create(objects: ObjectStore, replica: str) -> bool:
    """Whether `create` refuses a key that exists (False: the store overwrote it). Leaves nothing behind;
    `VoiceStoreUnavailable` when the store cannot be reached."""
    key = f"probe/{replica}-{secrets.token_hex(6)}"
    try:
        if not objects.create(key, b"first"):
            raise VoiceStoreUnavailable(f"voice store {objects.where}: a fresh probe key already exists ({key})")
        refused = not objects.create(key, b"second")
        return refused and objects.read(key) == b"first"
    finally:
        objects.delete(key)


def open_objects(url: str, data_dir: Path, *, endpoint_url: str | None = None, region: str | None = None,
                 addressing_style: str = "auto", timeout_s: float = 5.0) -> ObjectStore:
    """`TTS_VOICE_STORE`: empty → `data_dir`; `s3://bucket/prefix` → that bucket; anything else → a directory."""
    url = url.strip()
    if url.startswith("s3://"):
        from .s3_objects import S3Objects

        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"TTS_VOICE_STORE={url!r}: name a bucket, as s3://bucket or s3://bucket/prefix")
        return S3Objects(bucket, prefix, endpoint_url=endpoint_url, region=region,
                         addressing_style=addressing_style, timeout_s=timeout_s)
    if "://" in url:
        raise ValueError(f"TTS_VOICE_STORE={url!r}: use a directory path or s3://bucket/prefix")
    from .dir_objects import DirectoryObjects

    return DirectoryObjects(Path(url) if url else data_dir)
