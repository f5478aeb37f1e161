"""Mediation controls over signaling: caucuses with proven isolation, expert invitations, help."""
from __future__ import annotations

import asyncio

from sqlalchemy import select

from server.core.models import AuditEntry, Expert
from tests.rooms.clients import wait_for

from .peer import Peer, admitted


async def _admitted(live, media, mediator, token):
    return await admitted(live.url, media, mediator, token)


def _delivered(live, publisher, subscriber):
    room = live.app["hub"].rooms[live.room_id].room
    return room.delivery_counts().get((publisher, subscriber), 0)


async def test_caucus_isolation_proven_by_packet_counters(live, media):
    mediator = Peer(live.url, await live.token("mediator"), media)
    await mediator.join()
    await mediator.publish()
    a = await _admitted(live, media, mediator, await live.token("party", party_id=live.party_ids[0]))
    b = await _admitted(live, media, mediator, await live.token("party", party_id=live.party_ids[1]))
    peers = [mediator, a, b]
    try:
        ids = {p: p.me["id"] for p in peers}
        await wait_for(lambda: all(x.frames_from(ids[y]) > 3 for x in peers for y in peers if x is not y),
                       timeout=10, what="everyone sees everyone")
        ack = await mediator.call("caucus.create", {"name": "与申请人单独谈"})
        caucus = ack["caucus_id"]
        assert (await a.call("caucus.create", {"name": "x"}))["error"]["code"] == "forbidden"
        assert (await mediator.call("participant.move", {"participant_id": ids[a], "to": caucus}))["ok"]
        assert (await mediator.call("participant.move", {"participant_id": ids[mediator], "to": caucus}))["ok"]
        await asyncio.sleep(0.5)  # let the renegotiations settle
        before = {(x, y): _delivered(live, ids[x], ids[y]) for x in peers for y in peers if x is not y}
        seen = {(x, y): x.frames_from(ids[y]) for x in peers for y in peers if x is not y}
        await asyncio.sleep(2.0)
        after = {(x, y): _delivered(live, ids[x], ids[y]) for x in peers for y in peers if x is not y}
        # Server counters: nothing crosses between the caucus (mediator, a) and main (b).
        for x, y in [(a, b), (b, a), (mediator, b), (b, mediator)]:
            assert after[(x, y)] == before[(x, y)], f"{ids[x]} -> {ids[y]} leaked"
        # ...while the caucus members keep hearing each other.
        assert after[(a, mediator)] > before[(a, mediator)] + 20
        assert after[(mediator, a)] > before[(mediator, a)] + 20
        # Client side agrees: b decoded nothing new from the caucus.
        assert b.frames_from(ids[a]) == seen[(b, a)] and b.frames_from(ids[mediator]) == seen[(b, mediator)]
        # Chat is per area.
        assert (await a.call("chat.send", {"text": "只对调解员说"}))["ok"]
        await wait_for(lambda: mediator.events["chat.message"], what="caucus chat")
        await asyncio.sleep(0.3)
        assert not b.events["chat.message"]
        # Help reaches the mediator wherever they are.
        assert (await b.call("help.request"))["ok"]
        await wait_for(lambda: mediator.events["help.requested"], what="help")
        assert mediator.events["help.requested"][0]["where"] == "main"
        # The mediator drops and comes back: caucus and assignments survive.
        room = live.app["hub"].rooms[live.room_id].room
        mediator_token = mediator.token
        live.app["hub"].hold_grace = 0.5  # released soon after the drop (the hold is tested elsewhere)
        await mediator.sio.disconnect()
        await wait_for(lambda: ids[mediator] not in room.participants, what="mediator released")
        back = Peer(live.url, mediator_token, media)
        peers.append(back)
        ack = await back.join()
        assert ack["ok"] and caucus in [c["id"] for c in ack["room"]["caucuses"]]
        where = {p["id"]: p["where"] for p in ack["room"]["participants"]}
        assert where[ids[a]] == caucus and where[ids[mediator]] == caucus and where[ids[b]] == "main"
        # Back to main: media flows again between everyone.
        assert (await back.call("participant.move", {"participant_id": ids[a], "to": "main"}))["ok"]
        await back.publish()
        await wait_for(lambda: b.frames_from(ids[a]) > seen[(b, a)] + 5, timeout=10, what="b sees a again")
    finally:
        for p in peers:
            await p.close()
    async with live.db.session() as s:
        actions = [e.action for e in (await s.execute(select(AuditEntry).where(
            AuditEntry.session_id == live.session_id))).scalars()]
    assert "caucus.created" in actions and actions.count("participant.moved") == 3
    assert "participant.help_requested" in actions


async def test_expert_invited_from_the_pool_joins_and_is_revoked(live, media):
    mediator = Peer(live.url, await live.token("mediator"), media)
    await mediator.join()
    await mediator.publish()
    expert = None
    try:
        ack = await mediator.call("experts.list", {"specialty": "labour"})
        assert [e["name"] for e in ack["experts"]] == ["刘建国"]
        ack = await mediator.call("invite.expert", {"expert_id": ack["experts"][0]["id"]})
        assert ack["ok"] and ack["url"].endswith(ack["token"]) and ack["specialty"] == "labour"
        assert ack["qr"].startswith("data:image/svg+xml;base64,")
        invite_id = ack["invite_id"]
        expert = Peer(live.url, ack["token"], media)
        joined = await expert.join()
        assert joined["ok"] and joined["in_lobby"] and joined["participant"]["role"] == "expert"
        assert (await mediator.call("lobby.admit", {"participant_id": expert.me["id"]}))["ok"]
        await expert.publish()
        await wait_for(lambda: expert.frames_from(mediator.me["id"]) > 5, timeout=10, what="expert sees mediator")
        await wait_for(lambda: mediator.frames_from(expert.me["id"]) > 5, timeout=10, what="mediator sees expert")
        # Revoking the link ends the expert's presence at once, and the link is dead.
        assert (await mediator.call("invite.revoke", {"invite_id": invite_id}))["ok"]
        await wait_for(lambda: expert.events["removed"], what="revoked notice")
        assert expert.events["removed"][0]["reason"] == "revoked"
        room = live.app["hub"].rooms[live.room_id].room
        assert expert.me["id"] not in room.participants
        again = Peer(live.url, expert.token, media)
        assert (await again.join())["error"]["code"] == "token_revoked"
        await again.close()
    finally:
        if expert:
            await expert.close()
        await mediator.close()
    async with live.db.session() as s:
        rows = (await s.execute(select(AuditEntry).where(AuditEntry.session_id == live.session_id)
                                .order_by(AuditEntry.seq))).scalars().all()
        expert_row = (await s.execute(select(Expert))).scalars().first()
    steps = [e.action for e in rows if e.data.get("role") == "expert"]
    assert steps == ["invite.created", "participant.joined", "participant.admitted", "invite.revoked"]
    invited = next(e for e in rows if e.action == "invite.created" and e.data.get("role") == "expert")
    assert invited.data["name"] == expert_row.name and invited.data["specialty"] == "labour"
    assert any(e.action == "invite.revoked" for e in rows)


async def test_ad_hoc_expert_direct_entry_and_single_use(live, media):
    mediator = Peer(live.url, await live.token("mediator"), media)
    await mediator.join()
    try:
        bad = await mediator.call("invite.expert", {"name": "王工"})
        assert not bad["ok"]
        ack = await mediator.call("invite.expert", {"name": "王工程师", "specialty": "construction",
                                                    "organisation": "县住建局", "direct": True})
        assert ack["ok"]
        expert = Peer(live.url, ack["token"], media)
        joined = await expert.join()
        assert joined["ok"] and not joined["in_lobby"]
        live.app["hub"].reconnect_grace = 0.5
        assert (await expert.call("leave"))["ok"]
        await expert.close()
        # Right after leaving (a reload, a closed tab) the same person's device may come back...
        back = Peer(live.url, ack["token"], media, resume=expert.resume)
        assert (await back.join())["ok"]
        assert (await back.call("leave"))["ok"]
        await back.close()
        # ...but once that short grace is over the used single-use link no longer opens the room.
        await asyncio.sleep(0.7)
        again = Peer(live.url, ack["token"], media, resume=back.resume)
        assert (await again.join())["error"]["code"] == "token_used"
        await again.close()
        # A party can't invite anyone.
        party = Peer(live.url, await live.token("party", party_id=live.party_ids[0]), media)
        await party.join()
        assert (await party.call("invite.expert", {"name": "x", "specialty": "y"}))["error"]["code"] == "forbidden"
        assert (await party.call("experts.list"))["error"]["code"] == "forbidden"
        await party.close()
    finally:
        await mediator.close()


async def test_closing_a_caucus_brings_everyone_back_and_lobby_ack_hides_others(live, media):
    mediator = Peer(live.url, await live.token("mediator"), media)
    await mediator.join()
    a = await _admitted(live, media, mediator, await live.token("party", party_id=live.party_ids[0]))
    waiting = Peer(live.url, await live.token("party", party_id=live.party_ids[1]), media)
    try:
        caucus = (await mediator.call("caucus.create", {"name": "背对背"}))["caucus_id"]
        assert (await mediator.call("participant.move", {"participant_id": a.me["id"], "to": caucus}))["ok"]
        ack = await waiting.join()
        assert ack["in_lobby"] and [p["id"] for p in ack["room"]["participants"]] == [waiting.me["id"]]
        assert ack["room"]["caucuses"] == []
        assert (await a.call("caucus.close", {"caucus_id": caucus}))["error"]["code"] == "forbidden"
        assert (await mediator.call("caucus.close", {"caucus_id": caucus}))["ok"]
        await wait_for(lambda: any(p["id"] == a.me["id"] and p["where"] == "main"
                                   for p in mediator.state["participants"]) and not mediator.state["caucuses"],
                       what="back in main")
        assert (await mediator.call("caucus.close", {"caucus_id": caucus}))["error"]["code"] == "not_found"
    finally:
        for p in (waiting, a, mediator):
            await p.close()
