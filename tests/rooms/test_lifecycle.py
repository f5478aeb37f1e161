"""Leaving releases everything; bad input is refused without hurting anyone else;
renegotiations are serialized and coalesced; mute stops media without renegotiating."""

from __future__ import annotations

import asyncio

import pytest

from rooms import RoomError

from .clients import Client, wait_for


async def test_remove_releases_every_resource(harness):
    room = harness.room
    m = await harness.join("mediator", "mediator")
    a = await harness.join("alice")
    await wait_for(lambda: m.decoded["video"]["alice"] >= 5 and a.decoded["video"]["mediator"] >= 5, what="media")
    alice = room.participant("alice")
    pub_pc, sub_pc = alice.publish.pc, alice.subscribe.pc
    alice_producers = list(alice.producers.values())
    alice_consumers = list(alice.subscribe.consumers.values())
    mediator_sub = room.participant("mediator").subscribe

    await room.remove("alice", by="mediator")

    assert "alice" not in room.participants
    assert harness.removed == [("alice", "removed")]
    assert pub_pc.connectionState == "closed" and sub_pc.connectionState == "closed"
    assert all(p.closed and not p.consumers for p in alice_producers)
    assert all(c.closed for c in alice_consumers)
    assert all(not c.producer.closed for c in mediator_sub.consumers.values())
    assert not mediator_sub.consumers  # the mediator consumed only alice
    # The mediator's m-lines for alice go inactive through a renegotiation.
    await wait_for(lambda: not mediator_sub.negotiating, what="mediator renegotiated")
    assert all(s.consumer is None and not s.negotiated_active for s in mediator_sub.slots)
    frames = m.decoded["video"]["alice"]
    await asyncio.sleep(0.3)
    assert m.decoded["video"]["alice"] == frames

    await room.leave("mediator")
    await room.close()
    assert not room.participants and not room._tasks
    # Nothing of the server is left running: no task of rooms/ or of its aiortc objects.
    await asyncio.sleep(0.1)
    for client in harness.clients.values():
        await client.close()
    await asyncio.sleep(0.1)
    leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert not leftovers, leftovers


async def test_bad_input_is_refused_and_others_are_unaffected(harness):
    room = harness.room
    m = await harness.join("mediator", "mediator")
    a = await harness.join("alice")
    await wait_for(lambda: m.decoded["video"]["alice"] >= 3, what="media")

    with pytest.raises(RoomError) as err:
        await room.handle_publish_offer("alice", "v=0\r\nthis is not sdp\r\n", "offer")
    assert err.value.code == "bad_sdp"
    with pytest.raises(RoomError) as err:
        await room.handle_publish_offer("alice", "", "offer")
    assert err.value.code == "bad_sdp"
    with pytest.raises(RoomError) as err:
        await room.handle_publish_offer("alice", "v=0", "answer")
    assert err.value.code == "bad_request"
    with pytest.raises(RoomError) as err:
        await room.handle_subscribe_answer("alice", "garbage", "answer")
    assert err.value.code in ("bad_state", "bad_sdp")
    with pytest.raises(RoomError) as err:
        await room.add_ice_candidate("alice", "publish", "candidate:nonsense")
    assert err.value.code == "bad_candidate"
    with pytest.raises(RoomError) as err:
        await room.add_ice_candidate("alice", "sideways", "candidate:x")
    assert err.value.code == "bad_request"
    with pytest.raises(RoomError) as err:
        room.move("alice", "nowhere", by="mediator")
    assert err.value.code == "not_found"
    with pytest.raises(RoomError) as err:
        room.move("mediator", "lobby", by="alice")  # parties may not move people
    assert err.value.code == "forbidden"
    with pytest.raises(RoomError) as err:
        room.join("alice", "Alice", "party")
    assert err.value.code == "conflict"
    with pytest.raises(RoomError) as err:
        room.join("x", "X", "wizard")
    assert err.value.code == "bad_request"
    room.join("olga", "Olga", "observer", area="main")
    with pytest.raises(RoomError) as err:
        await room.handle_publish_offer("olga", "v=0", "offer")
    assert err.value.code == "forbidden"
    # The small encoding's m-line: a video m-line of the offer, beside exactly one camera, and an
    # m-line keeps the role it was given (docs/protocol.md, rtc.offer).
    offer = a.pub.localDescription.sdp
    mids = {t.kind: t.mid for t in a.pub.getTransceivers()}
    for tracks in ({mids["audio"]: "small"}, {"nope": "small"}, {mids["video"]: "small"}):
        with pytest.raises(RoomError) as err:
            await room.handle_publish_offer("alice", offer, "offer", tracks)
        assert err.value.code == "bad_request", tracks
    assert [p.role for p in room.participant("alice").producers.values()] == ["camera", "camera"]
    assert all(p.small is None for p in room.participant("alice").producers.values())

    # A real trickled candidate is accepted...
    await room.add_ice_candidate(
        "alice", "publish", "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host", "0", 0
    )
    # ...even when it overtakes the offer it belongs to (held until the offer lands).
    carol = room.join("carol", "Carol", "party", area="main")
    await room.add_ice_candidate("carol", "publish", "candidate:1 1 udp 2130706431 127.0.0.1 50001 typ host", "0", 0)
    assert len(carol.publish._pending_candidates) == 1
    c = Client(room, "carol", harness.media)
    harness.clients["carol"] = c
    await c.publish()
    assert not carol.publish._pending_candidates
    await wait_for(lambda: m.decoded["video"]["carol"] >= 3, what="carol after early candidate")
    # Media between the others never stopped.
    before = (m.decoded["video"]["alice"], a.decoded["video"]["mediator"])
    await wait_for(
        lambda: m.decoded["video"]["alice"] > before[0] + 5 and a.decoded["video"]["mediator"] > before[1] + 5,
        what="media still flowing",
    )


async def test_subscribe_renegotiations_are_serialized_and_coalesced(harness):
    room = harness.room
    m = await harness.join("mediator", "mediator")
    parties = [await harness.join(f"p{i}", area="lobby") for i in range(3)]
    await asyncio.sleep(0.1)
    offers_before = m.offers
    # Many changes at once: one offer in flight, the rest folded into one more.
    for p in parties:
        room.admit(p.id, by="mediator")
    caucus = room.create_caucus("c", by="mediator")
    room.move("p0", caucus, by="mediator")
    room.move("p0", "main", by="mediator")
    await wait_for(
        lambda: all(m.decoded["video"][p.id] >= 3 for p in parties), what="mediator sees all parties"
    )
    assert m.offers - offers_before <= 3
    assert not m.errors


async def test_mute_stops_forwarding_without_renegotiation(harness):
    room = harness.room
    m = await harness.join("mediator", "mediator")
    a = await harness.join("alice")
    await wait_for(lambda: m.decoded["video"]["alice"] >= 3 and m.decoded["audio"]["alice"] >= 3, what="media")
    offers = m.offers
    room.mute("alice", "video", True, by="mediator")
    room.mute("alice", "audio", True)
    await asyncio.sleep(0.2)
    frozen = dict(m.decoded["video"]), dict(m.decoded["audio"])
    await asyncio.sleep(0.5)
    assert m.decoded["video"]["alice"] == frozen[0]["alice"]
    assert m.decoded["audio"]["alice"] == frozen[1]["alice"]
    state = {p["id"]: p for p in room.state()["participants"]}
    assert state["alice"]["muted"] == {"audio": True, "video": True}
    room.mute("alice", "video", False)
    room.mute("alice", "audio", False)
    await wait_for(lambda: m.decoded["video"]["alice"] > frozen[0]["alice"] + 3, what="video after unmute")
    assert m.offers == offers


async def test_client_vanishing_releases_its_media(harness):
    """A browser tab closing (DTLS gone, no `leave`): its media stops everywhere and
    nothing keeps renegotiating towards it; the participant stays until signaling
    removes it. Its producers wait renew_grace for a new connection to carry them on
    (a page coming back on a new network), then close."""
    room = harness.room
    room.renew_grace = 0.5
    states = []
    room.on_connection_state = lambda pid, target, state: states.append((pid, target, state))
    m = await harness.join("mediator", "mediator")
    a = await harness.join("alice")
    await wait_for(lambda: m.decoded["video"]["alice"] >= 3 and a.decoded["video"]["mediator"] >= 3, what="media")

    await a.close()
    alice = room.participant("alice")
    await wait_for(lambda: alice.subscribe.closed and alice.publish is None, what="server noticed")
    assert not alice.subscribe.consumers
    await wait_for(lambda: not alice.producers, what="its producers closed after the grace")
    mediator_sub = room.participant("mediator").subscribe
    await wait_for(lambda: not mediator_sub.consumers and not mediator_sub.negotiating, what="mediator cleaned up")
    assert ("alice", "publish", "closed") in states and ("alice", "subscribe", "closed") in states
    await room.remove("alice")
