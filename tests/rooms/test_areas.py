"""Lobby and caucus isolation, proven by server counters and by what clients decode."""

from __future__ import annotations

import asyncio

from .clients import wait_for


def delta(before: dict, after: dict, pair: tuple[str, str]) -> int:
    return after.get(pair, 0) - before.get(pair, 0)


async def test_lobby_receives_nothing_until_admitted(harness):
    room = harness.room
    m = await harness.join("mediator", "mediator")
    p = await harness.join("party", area="lobby")  # may already set up its publish connection
    await wait_for(lambda: room.producers() and all(pr.frames_in > 10 for pr in room.producers()), what="producers flowing")
    await asyncio.sleep(0.5)

    counts = room.delivery_counts()
    assert counts.get(("mediator", "party"), 0) == 0
    assert counts.get(("party", "mediator"), 0) == 0
    assert room.participant("party").subscribe.offers_sent == 0
    assert p.offers == 0 and not p.decoded["video"] and not p.decoded["audio"]
    assert m.offers == 0 and not m.decoded["video"]

    room.admit("party", by="mediator")
    await wait_for(
        lambda: p.decoded["video"]["mediator"] >= 5 and m.decoded["video"]["party"] >= 5,
        what="media after admission",
    )
    assert room.state()["participants"][1]["where"] == "main"


async def test_caucus_isolates_media_both_ways_without_rejoin(harness):
    room = harness.room
    m = await harness.join("mediator", "mediator")
    a = await harness.join("alice")
    b = await harness.join("bob")
    await wait_for(
        lambda: b.decoded["video"]["alice"] >= 5 and b.decoded["video"]["mediator"] >= 5
        and a.decoded["video"]["bob"] >= 5,
        what="everyone sees everyone",
    )
    pcs_before = {pid: (p.publish.pc, p.subscribe.pc) for pid, p in room.participants.items()}
    offers_before = {pid: c.offers for pid, c in harness.clients.items()}

    caucus = room.create_caucus("alice private", by="mediator")
    room.move("alice", caucus, by="mediator")
    room.move("mediator", caucus, by="mediator")
    # Isolation is immediate on the server: no consumer crosses areas any more.
    for participant in room.participants.values():
        for consumer in participant.subscribe.consumers.values():
            assert room.participant(consumer.producer.participant_id).area == participant.area

    await wait_for(lambda: all(c.offers > offers_before[pid] for pid, c in harness.clients.items()), what="renegotiation")
    await asyncio.sleep(0.3)  # let in-flight packets land
    before_server = room.delivery_counts()
    before_bob = dict(b.decoded["video"])
    before_alice = dict(a.decoded["video"])
    await asyncio.sleep(1.0)
    after_server = room.delivery_counts()

    # Zero packets between the caucus and the main area, in either direction...
    for pair in [("alice", "bob"), ("mediator", "bob"), ("bob", "alice"), ("bob", "mediator")]:
        assert delta(before_server, after_server, pair) == 0, pair
    # ...while the caucus members keep talking to each other.
    assert delta(before_server, after_server, ("alice", "mediator")) > 10
    assert delta(before_server, after_server, ("mediator", "alice")) > 10
    # The clients agree.
    assert b.decoded["video"]["alice"] == before_bob["alice"]
    assert b.decoded["video"]["mediator"] == before_bob["mediator"]
    assert a.decoded["video"]["bob"] == before_alice["bob"]
    assert a.decoded["video"]["mediator"] > before_alice["mediator"]
    # Same connections throughout: a move renegotiates, it does not rejoin.
    assert {pid: (p.publish.pc, p.subscribe.pc) for pid, p in room.participants.items()} == pcs_before
    assert all(p.subscribe.pc.connectionState == "connected" for p in room.participants.values())

    # Back to main: bob sees alice again (reused m-line, fresh keyframe).
    seen = b.decoded["video"]["alice"]
    room.close_caucus(caucus, by="mediator")
    await wait_for(lambda: b.decoded["video"]["alice"] >= seen + 5, what="bob sees alice again")
    assert not any(c.errors for c in harness.clients.values())
    # The subscribe SDP did not grow: caucus round trip reused inactive m-lines.
    assert len(room.participant("bob").subscribe.slots) == 4
