"""Where files of record live: one atomic write, and the store of uploaded and generated files.
A small interface so an object store can replace the directory. (Recordings have their own
store in recordings/storage.py: that package imports nothing of the server.)"""
from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from pathlib import Path


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """The one way a file of record is written (evidence, agreements, transcripts, certificates,
    exports, notification copies): to a temporary name beside it, flushed to disk, then renamed,
    so a crash leaves either the old file or the whole new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class FileStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root.resolve() not in p.parents:
            raise ValueError("bad storage key")
        return p

    async def put(self, data: bytes, suffix: str = "") -> tuple[str, str]:
        """Store bytes durably; returns (key, sha256)."""
        key = f"{uuid.uuid4().hex[:2]}/{uuid.uuid4().hex}{suffix}"
        digest = hashlib.sha256(data).hexdigest()

        await asyncio.to_thread(atomic_write, self._path(key), data)
        return key, digest

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._path(key).read_bytes)

    async def delete(self, key: str) -> None:
        try:
            await asyncio.to_thread(self._path(key).unlink)
        except FileNotFoundError:
            pass
