"""Child process of test_crash.py: a Room, one real aiortc publisher and a
SessionRecorder, running until it is SIGKILLed.

    python tests/recordings/crash_child.py RECORDINGS_ROOT SESSION_KEY [NODE_ID]

Prints one JSON line {"recording": <wall time>} once the first frame was recorded.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from recordings import DirectoryStore, SessionRecorder  # noqa: E402
from tests.rooms.clients import Media  # noqa: E402
from tests.rooms.conftest import Harness  # noqa: E402


async def main(root: str, session_key: str, node_id: str | None = None) -> None:
    store = DirectoryStore(root)
    harness = Harness(Media())
    recorder = SessionRecorder(store, session_key, node_id=node_id)
    harness.room.on_producer_added = lambda producer: recorder.record_producer(harness.room, producer)
    await harness.join("alice")
    while recorder.frames_in == 0:
        await asyncio.sleep(0.005)
    print(json.dumps({"recording": time.time()}), flush=True)
    await asyncio.sleep(3600)  # until killed


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
