"""Blob stores: where document bytes live (the database keeps only their metadata)."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

from pycrm.errors import NotFound, StorageError

__all__ = ["FileBlobStore", "MemoryBlobStore"]


class MemoryBlobStore:
    """Blobs in a dict: for tests and the memory adapter."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (overwriting the same content is harmless)."""
        with self._lock:
            self._blobs[key] = bytes(data)

    def get(self, key: str) -> bytes:
        """The bytes under ``key``."""
        try:
            return self._blobs[key]
        except KeyError:
            raise NotFound("blob", key) from None

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds bytes."""
        return key in self._blobs

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error if it is gone)."""
        with self._lock:
            self._blobs.pop(key, None)


class FileBlobStore:
    """Blobs as files under a directory, two levels of fan-out by key."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        """The directory."""

    def _path(self, key: str) -> Path:
        if not key.replace("-", "").isalnum():
            raise StorageError(f"unsafe blob key {key!r}")
        return self.root / key[:2] / key[2:4] / key

    def put(self, key: str, data: bytes) -> None:
        """Write atomically (temp file, then rename), so a crash never leaves half a file."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
            os.replace(temp, path)
        except OSError as exc:
            raise StorageError(f"cannot write blob {key}: {exc}") from exc

    def get(self, key: str) -> bytes:
        """The bytes under ``key``."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound("blob", key) from None
        except OSError as exc:
            raise StorageError(f"cannot read blob {key}: {exc}") from exc

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds bytes."""
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error if it is gone)."""
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete blob {key}: {exc}") from exc
