"""Room.renew: fresh media connections for someone coming back (aiortc cannot restart ICE).

The participant keeps its place; its producers, with their viewers' and recorders' consumers,
are carried on by the new publish connection, on one continuous timeline; what the new
connection does not carry on closes after renew_grace."""
from __future__ import annotations

import asyncio

from .clients import Client, wait_for


class Collect:
    """A consumer sink that keeps (pts, arrival) of every frame, as a recorder would see them."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, float, bool]] = []
        self.closed = False

    def push(self, frame) -> bool:
        self.frames.append((frame.pts, frame.arrival, frame.keyframe))
        return True

    def close(self) -> None:
        self.closed = True


async def test_renewed_connections_carry_the_same_producers_on_one_timeline(harness, media):
    room = harness.room
    m = await harness.join("mediator", "mediator")
    a = await harness.join("alice")
    await wait_for(lambda: m.decoded["video"]["alice"] >= 5 and a.decoded["video"]["mediator"] >= 5, what="media")
    producers = {p.kind: p for p in room.participant("alice").producers.values()}
    sink = Collect()
    room.attach_sink(producers["video"].id, sink)
    await wait_for(lambda: len(sink.frames) >= 5, what="the recorder gets frames")
    offers_to_mediator = m.offers

    await a.close()  # the old connections are gone (a new network, say)
    back = Client(room, "alice", media)
    harness.clients["alice"] = back  # the new subscribe offer goes to the new client
    await room.renew("alice")
    assert room.participant("alice").area == "main"
    seen = len(sink.frames)
    decoded = m.decoded["video"]["alice"]
    await asyncio.sleep(0.3)
    await back.publish()
    await wait_for(lambda: m.decoded["video"]["alice"] > decoded + 10, timeout=10, what="the mediator decodes alice again")
    await wait_for(lambda: back.decoded["video"]["mediator"] > 5, timeout=10, what="alice decodes the mediator again")
    # Same producers, same consumers: the mediator's connection was not renegotiated.
    assert {p.kind: p for p in room.participant("alice").producers.values()} == producers
    assert m.offers == offers_to_mediator
    assert not sink.closed
    # One timeline: the first frame of the new source follows the last of the old one by the
    # time that passed between them (a fresh source would start at a random timestamp).
    (last_pts, last_at, _), (first_pts, first_at, first_key) = sink.frames[seen - 1], sink.frames[seen]
    assert first_key
    expected = (first_at - last_at) * 90000
    assert abs((first_pts - last_pts) - expected) < 0.05 * 90000, (first_pts - last_pts, expected)
    assert all(b[0] > a_[0] for a_, b in zip(sink.frames, sink.frames[1:]))


async def test_what_the_new_connection_does_not_carry_on_closes_after_the_grace(harness, media):
    room = harness.room
    room.renew_grace = 0.5
    m = await harness.join("mediator", "mediator")
    a = await harness.join("alice")
    await wait_for(lambda: m.decoded["video"]["alice"] >= 5, what="media")
    await a.close()
    back = Client(room, "alice", media)
    harness.clients["alice"] = back
    await room.renew("alice")
    await back.publish(video=False)  # the camera stays off this time
    kinds = lambda: sorted(p.kind for p in room.participant("alice").producers.values())  # noqa: E731
    assert kinds() == ["audio", "video"]
    await wait_for(lambda: kinds() == ["audio"], what="the video producer closed after the grace")
    mediator_sub = room.participant("mediator").subscribe
    await wait_for(lambda: sorted(c.producer.kind for c in mediator_sub.consumers.values()
                                  if c.producer.participant_id == "alice") == ["audio"], what="its consumer closed")
    assert "alice" in room.participants
