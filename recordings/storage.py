"""Where recordings live: a small key/value interface over byte streams.

The recorder, recovery, verification and compose only talk to `RecordingStore`, so
an object store can be added later without touching them. Keys are relative POSIX
paths such as ``case-12/session-3/alice-1.webm``; every component is restricted to
``[A-Za-z0-9._-]`` (no ``..``, no hidden names) so a key can never escape the root.

`DirectoryStore` keeps each key as a file under a root directory (RECORDINGS_DIR).
A file being recorded is written in place under its final key, so after a crash
(SIGKILL) `recover()` finds exactly what the dead process had flushed.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

_COMPONENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_CHUNK = 1 << 20


def check_key(key: str) -> str:
    """Return `key` if it is a valid relative key, else raise ValueError."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"storage key must be a non-empty string, not {key!r}")
    parts = key.split("/")
    for part in parts:
        if not _COMPONENT.fullmatch(part) or part.strip(".") == "":
            raise ValueError(
                f"bad storage key {key!r}: each '/'-separated part must be 1-128 of "
                "[A-Za-z0-9._-], not start with '.', and not be '.' or '..'"
            )
    return key


@runtime_checkable
class RecordingStore(Protocol):
    """Byte streams by key. Implementations must be safe to call from a worker
    thread (the recorder writes off the event loop)."""

    def open_write(self, key: str) -> BinaryIO:
        """A new, seekable, unbuffered binary stream for `key`. Raises
        FileExistsError if the key exists: recordings are never overwritten."""
        ...

    def finalize(self, key: str) -> None:
        """The stream of `key` was closed: make it durable (fsync / upload)."""
        ...

    def open_read(self, key: str) -> BinaryIO:
        """A seekable binary stream over `key` (FileNotFoundError if absent)."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Atomically create or replace a small object (the manifest)."""
        ...

    def get_bytes(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def sha256(self, key: str) -> str:
        """Hex SHA-256 of the stored bytes."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Every key under `prefix` (a key prefix ending at a '/' boundary), sorted."""
        ...

    def rename(self, src: str, dst: str) -> None:
        """Atomically replace `dst` by `src`."""
        ...

    def delete(self, key: str) -> None:
        """Remove `key`; no error if it does not exist."""
        ...


class DirectoryStore:
    """RecordingStore on a local directory (RECORDINGS_DIR)."""

    def __init__(self, root: os.PathLike | str) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"DirectoryStore({str(self.root)!r})"

    def path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def open_write(self, key: str) -> BinaryIO:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Unbuffered: whatever the muxer flushes reaches the kernel at once, so a
        # SIGKILL loses nothing the muxer had already written out.
        return open(path, "xb", buffering=0)

    def finalize(self, key: str) -> None:
        path = self.path(key)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(path.parent)

    def open_read(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def get_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    def sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        with open(self.path(key), "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def list(self, prefix: str) -> list[str]:
        base = self.path(prefix.rstrip("/"))
        if not base.is_dir():
            return []
        keys = []
        for path in base.rglob("*"):
            if path.is_file() and not path.name.endswith(".tmp"):
                keys.append(path.relative_to(self.root).as_posix())
        return sorted(keys)

    def rename(self, src: str, dst: str) -> None:
        target = self.path(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path(src), target)
        _fsync_dir(target.parent)

    def delete(self, key: str) -> None:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            pass


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories
    finally:
        os.close(fd)
