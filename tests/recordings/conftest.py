"""Fixtures for the recordings/ suite: real aiortc peers in a real Room (the rooms
suite's Harness), a directory store per test, an Ed25519 key, and one shared
two-participant recording made once per module where tests only read it."""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from recordings import DirectoryStore, Manifest, SessionRecorder
from tests.rooms.clients import EncodedTrack, Media, wait_for
from tests.rooms.conftest import Harness

SESSION = "case-7/session-1"


@pytest.fixture(scope="session")
def media() -> Media:
    return Media()


@pytest.fixture(scope="session")
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def store(tmp_path) -> DirectoryStore:
    return DirectoryStore(tmp_path / "recordings")


@pytest.fixture
async def harness(media):
    h = Harness(media)
    yield h
    await h.close()


def log_sends(track: EncodedTrack, log: list[tuple[float, bytes]]) -> None:
    """Record (wall time, bytes) of every frame a client track hands its sender."""
    original = track.recv

    async def recv():  # type: ignore[no-untyped-def]
        packet = await original()
        log.append((time.time(), bytes(packet)))
        return packet

    track.recv = recv  # type: ignore[method-assign]


@dataclass
class Publisher:
    pid: str
    video: list[tuple[float, bytes]] = field(default_factory=list)
    audio: list[tuple[float, bytes]] = field(default_factory=list)


async def join_logged(harness: Harness, pid: str, role: str = "party", *, h264: bool = False) -> Publisher:
    """Join and publish, logging every frame the publisher sends."""
    harness.room.join(pid, pid.title(), role, area="main")
    from tests.rooms.clients import Client

    client = Client(harness.room, pid, harness.media)
    harness.clients[pid] = client
    await client.publish(h264=h264)
    pub = Publisher(pid)
    log_sends(client.video_track, pub.video)
    log_sends(client.audio_track, pub.audio)
    return pub


def record_everything(harness: Harness, recorder: SessionRecorder) -> None:
    harness.room.on_producer_added = lambda producer: recorder.record_producer(harness.room, producer)


@dataclass
class Recording:
    root: Path
    manifest: Manifest
    publishers: dict[str, Publisher]
    stats: list[dict]


async def _record_two(media: Media, root: Path) -> Recording:
    store = DirectoryStore(root)
    harness = Harness(media)
    try:
        recorder = SessionRecorder(store, SESSION)
        record_everything(harness, recorder)
        recorder.pause_participant("carol")  # never consents: nothing of hers may be written
        pubs = {"mediator": await join_logged(harness, "mediator", "mediator")}
        await asyncio.sleep(0.7)  # alice starts later: the manifest must show it
        pubs["alice"] = await join_logged(harness, "alice")
        await join_logged(harness, "carol")
        await wait_for(lambda: len(pubs["alice"].video) > 75, timeout=10, what="alice sending 2.5 s")
        manifest = await recorder.stop()
        stats = recorder.stats()
        return Recording(root, manifest, pubs, stats)
    finally:
        await harness.close()


@pytest.fixture(scope="session")
def two_party(media, tmp_path_factory) -> Recording:
    """mediator publishes from t=0, alice from ~0.7 s, carol (paused) too; ~3.5 s."""
    return asyncio.run(_record_two(media, tmp_path_factory.mktemp("two-party")))


@pytest.fixture
def two_party_copy(two_party, tmp_path) -> DirectoryStore:
    """A private copy of the shared recording, for tests that damage it."""
    shutil.copytree(two_party.root, tmp_path / "copy")
    return DirectoryStore(tmp_path / "copy")


def bright_fraction(picture, x0: int, x1: int) -> float:
    """Share of sampled luma values in columns [x0, x1) clearly above black (a
    black tile is luma ~16 everywhere; the test picture is not)."""
    plane, stride = memoryview(picture.planes[0]), picture.planes[0].line_size
    luma = [plane[y * stride + x] for y in range(0, picture.height, 6) for x in range(x0, x1, 4)]
    return sum(v > 40 for v in luma) / len(luma)
