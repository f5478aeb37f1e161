"""One device per link (signaling/devices.py, docs/protocol.md "One device per link"): a used link
never takes its holder's seat. Real socket.io, real aiortc peers, the real app."""
from __future__ import annotations

import asyncio

from sqlalchemy import select

from server.core.models import AuditEntry
from tests.rooms.clients import wait_for

from .peer import Peer


async def _actions(live) -> list[str]:
    async with live.db.session() as s:
        return [a for (a,) in (await s.execute(select(AuditEntry.action).where(
            AuditEntry.session_id == live.session_id).order_by(AuditEntry.id))).all()]


def _waiting(peer) -> list[str]:
    return [d["participant_id"] for d in (peer.state or {}).get("devices_waiting", [])]


async def test_a_second_device_waits_for_the_mediator_and_never_replaces_the_holder(live, media):
    mediator = Peer(live.url, await live.token("mediator"), media)
    token = await live.token("party", party_id=live.party_ids[0])
    holder = Peer(live.url, token, media)
    stranger = Peer(live.url, token, media)
    forged = Peer(live.url, token, media, resume="x" * 32)
    other = Peer(live.url, token, media)
    try:
        await mediator.join()
        first = await holder.join()
        assert first["ok"] and first["resume"] and len(first["resume"]) >= 32
        assert (await mediator.call("lobby.admit", {"participant_id": holder.me["id"]}))["ok"]
        pid = holder.me["id"]
        hub = live.app["hub"]
        room = hub.rooms[live.room_id].room

        # The same link on another device, bare or with a made-up secret: it waits, the holder stays.
        for device in (stranger, forged):
            ack = await device.join()
            assert ack["ok"] is False and ack["error"]["code"] == "second_device", ack
        await wait_for(lambda: _waiting(mediator) == [pid], what="the mediator sees the second device")
        assert not holder.events["removed"]
        assert hub.by_sid.get(holder.sio.get_sid("/")) == (live.room_id, pid)
        assert room.participants[pid].area != "lobby"
        # Waiting, it can do nothing in the room.
        assert (await stranger.call("chat.send", {"text": "我是本人"}))["error"]["code"] == "not_joined"
        # Someone who does not admit cannot let it in.
        assert (await holder.call("device.admit", {"participant_id": pid}))["error"]["code"] == "forbidden"

        # Turned away: the first-waiting device is told; the other still waits.
        assert (await mediator.call("device.deny", {"participant_id": pid}))["ok"]
        await wait_for(lambda: stranger.events["device.denied"], what="the stranger is turned away")
        assert not forged.events["device.denied"]
        assert (await mediator.call("device.deny", {"participant_id": pid}))["ok"]
        await wait_for(lambda: forged.events["device.denied"], what="the forged secret is turned away")
        await wait_for(lambda: _waiting(mediator) == [], what="nobody waits")
        assert (await mediator.call("device.deny", {"participant_id": pid}))["error"]["code"] == "not_found"
        assert not holder.events["removed"]

        # A device the mediator lets in takes the place over: it joins with the secret it was given.
        assert (await other.join())["error"]["code"] == "second_device"
        await wait_for(lambda: _waiting(mediator) == [pid], what="the new phone waits")
        assert (await mediator.call("device.admit", {"participant_id": pid}))["ok"]
        await wait_for(lambda: other.events["device.admitted"], what="the new phone is let in")
        ack = await other.join()
        assert ack["ok"] and ack["resumed"] and ack["participant"]["id"] == pid
        await wait_for(lambda: holder.events["removed"], what="the old device is told")
        assert holder.events["removed"][0]["reason"] == "replaced"
        # The old device's secret no longer opens the place.
        again = Peer(live.url, token, media, resume=holder.resume)
        assert (await again.join())["error"]["code"] == "second_device"
        await again.close()
        actions = await _actions(live)
        assert actions.count("participant.second_device") == 4
        assert actions.count("participant.device_denied") == 2 and actions.count("participant.device_admitted") == 1
    finally:
        for p in (other, forged, stranger, holder, mediator):
            await p.close()


async def test_a_used_single_use_link_without_its_device_is_refused(live, media):
    mediator = Peer(live.url, await live.token("mediator"), media)
    await mediator.join()
    expert = thief = None
    try:
        ack = await mediator.call("invite.expert", {"name": "赵工程师", "specialty": "construction", "direct": True})
        assert ack["ok"]
        expert = Peer(live.url, ack["token"], media)
        assert (await expert.join())["ok"]
        room = live.app["hub"].rooms[live.room_id].room
        eid = expert.me["id"]
        # While the expert is in, and right after they left, the bare link is refused.
        thief = Peer(live.url, ack["token"], media)
        assert (await thief.join())["error"]["code"] == "token_used"
        assert eid in room.participants and not expert.events["removed"]
        await thief.close()
        assert (await expert.call("leave"))["ok"]
        await expert.close()
        thief = Peer(live.url, ack["token"], media)
        assert (await thief.join())["error"]["code"] == "token_used"
        await thief.close()
        # The expert's own device comes back within the grace (a reload).
        back = Peer(live.url, ack["token"], media, resume=expert.resume)
        assert (await back.join())["ok"]
        await back.close()
    finally:
        for p in (thief, expert, mediator):
            if p is not None:
                await p.close()


async def test_a_waiting_device_takes_over_when_the_holder_is_gone(live, media):
    """The phone died (its connection dropped without a word); the person opens the link on a
    laptop: once the hold runs out the laptop is let in, no mediator needed."""
    hub = live.app["hub"]
    hub.hold_grace = 1.0
    mediator = Peer(live.url, await live.token("mediator"), media)
    token = await live.token("party", party_id=live.party_ids[0])
    phone, laptop = Peer(live.url, token, media), Peer(live.url, token, media)
    try:
        await mediator.join()
        await phone.join()
        assert (await mediator.call("lobby.admit", {"participant_id": phone.me["id"]}))["ok"]
        pid = phone.me["id"]
        await phone.drop()
        assert (await laptop.join())["error"]["code"] == "second_device"
        await wait_for(lambda: laptop.events["device.admitted"], timeout=5, what="the laptop is let in")
        ack = await laptop.join()
        assert ack["ok"] and ack["participant"]["id"] == pid
        # It comes back to where the person was (admitted before), not to the lobby.
        assert not ack["in_lobby"]
    finally:
        for p in (laptop, phone, mediator):
            await p.close()


async def test_a_waiting_device_that_goes_away_leaves_the_list(live, media):
    mediator = Peer(live.url, await live.token("mediator"), media)
    token = await live.token("party", party_id=live.party_ids[0])
    holder, stranger = Peer(live.url, token, media), Peer(live.url, token, media)
    try:
        await mediator.join()
        await holder.join()
        pid = holder.me["id"]
        assert (await stranger.join())["error"]["code"] == "second_device"
        await wait_for(lambda: _waiting(mediator) == [pid], what="listed")
        await stranger.close()
        await wait_for(lambda: _waiting(mediator) == [], what="gone from the list")
        assert not live.app["hub"].device_sids
        await asyncio.sleep(0)
    finally:
        for p in (stranger, holder, mediator):
            await p.close()
