"""An interpreter follows the party they accompany (docs/procedure.md, "Interpreters and support
persons"): moving the party into a caucus moves the interpreter in the same step, and from then on
the interpreter hears and is heard in the caucus and nothing of the main area. Real aiortc peers."""

from __future__ import annotations

import asyncio

import pytest

from rooms import RoomError
from rooms.participant import MAIN

from .clients import Client, wait_for
from .conftest import Harness


def delta(before: dict, after: dict, pair: tuple[str, str]) -> int:
    return after.get(pair, 0) - before.get(pair, 0)


@pytest.fixture
async def counted(media):
    changes = []
    h = Harness(media, on_state_changed=lambda room: changes.append(1))
    h.changes = changes
    yield h
    await h.close()


async def test_the_interpreter_moves_with_the_party_and_hears_the_caucus_not_main(counted):
    h, room = counted, counted.room
    await h.join("mediator", "mediator")
    alice = await h.join("alice")
    bob = await h.join("bob")
    room.join("interp", "Wang", "interpreter", area=MAIN, accompanies=("alice", "Alice"))
    interp = h.clients["interp"] = Client(room, "interp", h.media)
    await interp.publish()
    await wait_for(lambda: interp.decoded["audio"]["bob"] >= 5 and interp.decoded["audio"]["alice"] >= 5
                   and bob.decoded["audio"]["interp"] >= 5, timeout=10, what="everyone hears everyone in main")
    assert [p["accompanies"] for p in room.state()["participants"]] == [None, None, None, "alice"]

    caucus = room.create_caucus("with Alice", by="mediator")
    before = len(h.changes)
    assert room.move("alice", caucus, by="mediator") == ["alice", "interp"]
    assert len(h.changes) == before + 1  # one state change for both
    assert room.participant("interp").area == caucus
    room.move("mediator", caucus, by="mediator")
    # Isolation is immediate: no consumer of the interpreter's crosses areas any more.
    for consumer in room.participant("interp").subscribe.consumers.values():
        assert room.participant(consumer.producer.participant_id).area == caucus

    # Alone, the interpreter cannot leave the party for another area; nothing changes.
    other = room.create_caucus("other", by="mediator")
    for to in (MAIN, other):
        with pytest.raises(RoomError) as refused:
            room.move("interp", to, by="mediator")
        assert refused.value.code == "linked"
    assert room.participant("interp").area == caucus

    await asyncio.sleep(1.0)  # renegotiation and in-flight packets
    server_before = room.delivery_counts()
    heard_before = dict(interp.decoded["audio"])
    bob_before = dict(bob.decoded["audio"])
    await asyncio.sleep(1.5)
    server_after = room.delivery_counts()
    # Nothing between the interpreter and the main area, either way...
    assert delta(server_before, server_after, ("bob", "interp")) == 0
    assert delta(server_before, server_after, ("interp", "bob")) == 0
    assert interp.decoded["audio"]["bob"] == heard_before.get("bob", 0)
    assert bob.decoded["audio"]["interp"] == bob_before.get("interp", 0)
    # ...while they hear the party and the mediator, and are heard by them, in the caucus.
    for pair in (("alice", "interp"), ("mediator", "interp"), ("interp", "alice"), ("interp", "mediator")):
        assert delta(server_before, server_after, pair) > 10, pair
    assert interp.decoded["audio"]["alice"] > heard_before["alice"] + 10

    # The caucus closes: both are back in main, and the interpreter hears bob again.
    room.close_caucus(caucus, by="mediator")
    assert room.participant("alice").area == room.participant("interp").area == MAIN
    heard = interp.decoded["audio"]["bob"]
    await wait_for(lambda: interp.decoded["audio"]["bob"] > heard + 10, timeout=10, what="main again")


async def test_a_linked_role_needs_its_party_and_only_linked_roles_have_one(harness):
    room = harness.room
    with pytest.raises(RoomError):
        room.join("interp", "Wang", "interpreter", area=MAIN)
    with pytest.raises(RoomError):
        room.join("obs", "Obs", "observer", area=MAIN, accompanies=("alice", "Alice"))
    assert room.participants == {}


async def test_coming_back_the_interpreter_goes_where_the_party_is(harness):
    """A dropped interpreter re-enters (their remembered area) next to their party, never alone in a caucus."""
    room = harness.room
    room.join("mediator", "Mediator", "mediator", area=MAIN)
    room.join("alice", "Alice", "party", area=MAIN)
    caucus = room.create_caucus("with Alice", by="mediator")
    other = room.create_caucus("other", by="mediator")
    room.join("interp", "Wang", "interpreter", remembered=other, accompanies=("alice", "Alice"))
    assert room.participant("interp").area == MAIN  # with Alice, not in "other"
    await room.remove("interp", reason="disconnected")
    room.move("alice", caucus, by="mediator")
    room.join("interp", "Wang", "interpreter", remembered=MAIN, accompanies=("alice", "Alice"))
    assert room.participant("interp").area == caucus
    await room.remove("interp", reason="disconnected")
    room.move("alice", "lobby", by="mediator")
    room.join("interp", "Wang", "interpreter", remembered=caucus, accompanies=("alice", "Alice"))
    assert room.participant("interp").area == MAIN  # the party waits: the main area, not the caucus
    assert room.participant("alice").area == "lobby"
