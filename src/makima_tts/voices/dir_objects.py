"""`DirectoryObjects`: the object store as files under one directory (`TTS_DATA_DIR` by default, or a
shared volume that every replica mounts).

Each key is a file path under the root. What it relies on from the filesystem, and so what a shared
volume must give (README "Scaling out" lists which do):
- `write`: a temporary file in the same folder, flushed, then `rename`d over the key: atomic replace;
- `create`: the same temporary file, then a hard `link` to the key, which fails with EEXIST when the key
  exists: an atomic exclusive create of a complete file (an `O_EXCL` open would show a half-written one);
- lookups that are not cached across clients (NFS: mount with `lookupcache=positive` or `none`, so a voice
  made on another replica is found at once).
Any other OS error (a vanished mount, EIO, ESTALE, a full disk) is `VoiceStoreUnavailable`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import VoiceStoreUnavailable

TEMP_PREFIX = ".tmp-"


class DirectoryObjects:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.where = str(self.root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unavailable(exc, self.root) from None

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"bad object key {key!r}")
        return self.root.joinpath(*parts)

    def _unavailable(self, exc: OSError, path: Path) -> VoiceStoreUnavailable:
        return VoiceStoreUnavailable(f"voice store {self.where} cannot be used: {exc.strerror or exc} ({path})")

    def _check_root(self) -> None:
        """A missing root is a missing volume, not a missing voice."""
        if not self.root.is_dir():
            raise VoiceStoreUnavailable(
                f"voice store {self.where} is missing (is the shared volume mounted?)")

    def read(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            self._check_root()
            return None
        except OSError as exc:
            raise self._unavailable(exc, path) from None

    def _staged(self, path: Path, data: bytes) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            self._check_root()
            tmp = self._staged(path, data)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            raise self._unavailable(exc, path) from None

    def create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        try:
            self._check_root()
            for _ in range(3):  # a delete may remove the (empty) parent folder between mkdir and link
                tmp = self._staged(path, data)
                try:
                    os.link(tmp, path)
                    return True
                except FileExistsError:
                    return False
                except FileNotFoundError:
                    continue
                finally:
                    Path(tmp).unlink(missing_ok=True)
            raise FileNotFoundError(2, "the folder kept vanishing", str(path.parent))
        except OSError as exc:
            raise self._unavailable(exc, path) from None

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise self._unavailable(exc, path) from None
        folder = path.parent
        while folder != self.root:  # drop folders left empty (another writer may refill one: then it stays)
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent

    def keys(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        found = []
        try:
            self._check_root()
            for folder, _, files in os.walk(base):
                rel = Path(folder).relative_to(self.root).as_posix()
                for name in files:
                    if not name.startswith(TEMP_PREFIX):
                        key = name if rel == "." else f"{rel}/{name}"
                        if key.startswith(prefix):
                            found.append(key)
        except OSError as exc:
            raise self._unavailable(exc, base) from None
        return sorted(found)
