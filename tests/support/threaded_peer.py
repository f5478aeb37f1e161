"""An aiortc participant (tests/signaling/peer.py) for synchronous browser tests: its own asyncio
loop in a thread, since sync Playwright keeps the test thread's loop busy."""
from __future__ import annotations

import asyncio
import threading
import time

from tests.rooms.clients import Media
from tests.signaling.peer import Peer


class ThreadedPeer:
    """Joins with `token`, publishes pre-encoded VP8 and Opus, decodes what it receives."""

    def __init__(self, base_url: str, token: str, media: Media | None = None):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="aiortc-peer", daemon=True)
        self._thread.start()
        self._media = media or Media()
        self.peer: Peer = self.run(self._make(base_url, token))

    async def _make(self, base_url: str, token: str) -> Peer:
        return Peer(base_url, token, self._media)

    def run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def join_and_publish(self) -> dict:
        ack = self.run(self.peer.join())
        assert ack.get("ok"), ack
        published = self.run(self.peer.publish())
        assert published.get("ok"), published
        return ack

    @property
    def id(self) -> str:
        return self.peer.me["id"]

    def frames_from(self, publisher_id: str, kind: str = "video") -> int:
        return self.peer.frames_from(publisher_id, kind)

    def wait_frames(self, publisher_id: str, kind: str = "video", by: int = 10, timeout: float = 15.0,
                    what: str = "") -> float:
        """Seconds until `by` more frames of `kind` from publisher_id were decoded."""
        start = time.monotonic()
        first = self.frames_from(publisher_id, kind)
        while time.monotonic() - start < timeout:
            if self.frames_from(publisher_id, kind) >= first + by:
                return time.monotonic() - start
            time.sleep(0.1)
        raise AssertionError(f"aiortc peer: {what}: {kind} from {publisher_id} went {first} -> "
                             f"{self.frames_from(publisher_id, kind)} in {timeout} s; decoded: {dict(self.peer.decoded)}")

    def close(self) -> None:
        try:
            self.run(self.peer.close(), timeout=15)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()
