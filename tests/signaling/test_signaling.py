"""Signaling over real socket.io with real aiortc peers: join, lobby, media, chat, errors, leaving."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from server.core.models import AuditEntry, ChatMessage
from tests.api.helpers import row_counts
from tests.rooms.clients import wait_for

from .peer import Peer


async def test_lobby_admission_media_and_chat(live, media):
    mediator = Peer(live.url, await live.token("mediator"), media)
    party = Peer(live.url, await live.token("party", party_id=live.party_ids[0]), media)
    try:
        ack = await mediator.join()
        assert ack["ok"] and ack["participant"]["role"] == "mediator" and not ack["in_lobby"]
        assert ack["ice_servers"] == []
        ack = await party.join()
        assert ack["ok"] and ack["in_lobby"]
        await wait_for(lambda: mediator.events["lobby.waiting"], what="lobby.waiting")
        assert mediator.events["lobby.waiting"][0]["name"] == "张伟"
        # The waiting party sees only themself.
        await wait_for(lambda: party.state is not None, what="room.state")
        assert [p["id"] for p in party.state["participants"]] == [party.me["id"]]
        assert party.state["mediator_present"] is True

        assert (await party.publish())["ok"]
        assert (await mediator.publish())["ok"]
        # Lobby: nothing forwarded to or from the party.
        await asyncio.sleep(0.5)
        assert party.frames_from(mediator.me["id"]) == 0 and mediator.frames_from(party.me["id"]) == 0

        # A party cannot admit; the mediator can.
        denied = await party.call("lobby.admit", {"participant_id": party.me["id"]})
        assert not denied["ok"] and denied["error"]["code"] == "forbidden"
        assert (await mediator.call("lobby.admit", {"participant_id": party.me["id"]}))["ok"]
        await wait_for(lambda: party.frames_from(mediator.me["id"]) > 5, what="party decodes mediator video")
        await wait_for(lambda: mediator.frames_from(party.me["id"]) > 5, what="mediator decodes party video")
        await wait_for(lambda: mediator.frames_from(party.me["id"], "audio") > 5, what="audio")
        await wait_for(lambda: len(party.state["participants"]) == 2, what="full state once admitted")

        ack = await party.call("chat.send", {"text": "您好，我是申请人"})
        assert ack["ok"]
        await wait_for(lambda: mediator.events["chat.message"], what="chat delivered")
        assert mediator.events["chat.message"][0]["text"] == "您好，我是申请人"

        # Muting oneself shows in the state; the mediator can mute a party.
        assert (await party.call("media.mute", {"kind": "audio", "muted": True}))["ok"]
        await wait_for(lambda: any(p["muted"]["audio"] for p in mediator.state["participants"]
                                   if p["id"] == party.me["id"]), what="mute in state")
        assert (await mediator.call("participant.mute", {"participant_id": party.me["id"], "kind": "video"}))["ok"]
        await wait_for(lambda: party.events["muted"], what="muted notice")
    finally:
        await party.close()
        await mediator.close()
    async with live.db.session() as s:
        chat = (await s.execute(select(ChatMessage))).scalars().all()
        actions = [e.action for e in (await s.execute(select(AuditEntry).where(
            AuditEntry.session_id == live.session_id).order_by(AuditEntry.seq))).scalars()]
    assert [(c.name, c.text, c.area) for c in chat] == [("张伟", "您好，我是申请人", "main")]
    for action in ("participant.joined", "participant.admitted", "participant.muted", "participant.left"):
        assert action in actions, actions


async def test_bad_events_get_error_acks_and_change_nothing(live, media):
    mediator = Peer(live.url, await live.token("mediator"), media)
    stranger = Peer(live.url, "x" * 40, media)
    try:
        await stranger.connect()
        ack = await stranger.call("chat.send", {"text": "hi"})
        assert ack["error"]["code"] == "not_joined"
        ack = await stranger.call("join", {"token": "x" * 40})
        assert ack["error"]["code"] == "token_invalid"
        assert (await stranger.call("join", {"token": 5}))["error"]["code"] == "bad_request"
        assert (await stranger.call("join", "not an object"))["error"]["code"] == "bad_request"

        first = await mediator.join()
        assert first["ok"]
        # The same join again on this connection (a double tap) is idempotent: the same answer,
        # nobody added; another link on this connection is refused.
        again = await mediator.join()
        assert again["ok"] and again["participant"] == first["participant"]
        assert len(live.app["hub"].rooms[live.room_id].room.participants) == 1
        other = await live.token("party", party_id=live.party_ids[0])
        assert (await mediator.call("join", {"token": other}))["error"]["code"] == "already_joined"
        for event, data, code in [
            ("rtc.offer", {"sdp": "v=0 garbage sdp", "type": "offer"}, None),
            ("rtc.offer", {"sdp": "v=0 garbage sdp", "type": "answer"}, "bad_request"),
            ("rtc.answer", {"sdp": "v=0 garbage", "type": "answer"}, None),
            ("rtc.candidate", {"candidate": "candidate:bogus", "target": "sideways"}, "bad_request"),
            ("lobby.admit", {"participant_id": "nobody"}, "not_found"),
            ("participant.remove", {"participant_id": "nobody"}, "not_found"),
            ("media.mute", {"kind": "smell", "muted": True}, "bad_request"),
            ("chat.send", {"text": ""}, "bad_request"),
            ("chat.send", {"text": "长" * 2001}, "bad_request"),
            ("chat.send", {"text": "ok", "extra": 1}, "bad_request"),
        ]:
            ack = await mediator.call(event, data)
            assert not ack["ok"], (event, ack)
            assert ack["error"]["message"], ack
            if code:
                assert ack["error"]["code"] == code, (event, ack)
        # Still fully working afterwards.
        assert (await mediator.publish())["ok"]
        assert (await mediator.call("chat.send", {"text": "仍然正常"}))["ok"]
    finally:
        await stranger.close()
        await mediator.close()


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_ids_beyond_the_database_and_control_characters_get_bad_request(live, media):
    """The events' ids are bounded like the API's, and their text is text (docs/api.md, "Accepted input")."""
    mediator = Peer(live.url, await live.token("mediator"), media)
    try:
        assert (await mediator.join())["ok"]
        before = await row_counts(live.db)
        for event, data, field in [
            ("invite.expert", {"expert_id": 2**63}, "expert_id"),
            ("invite.expert", {"expert_id": 3_000_000_000}, "expert_id"),
            ("invite.revoke", {"invite_id": 2**63}, "invite_id"),
            ("invite.revoke", {"invite_id": 3_000_000_000}, "invite_id"),
            ("invite.expert", {"name": "王\x00工", "specialty": "construction"}, "name"),
            ("experts.list", {"specialty": "labour\x00"}, "specialty"),
            ("chat.send", {"text": "你好\x00"}, "text"),
            ("chat.send", {"text": "\x1b[31m红字"}, "text"),
            ("caucus.create", {"name": "单独\x7f谈"}, "name"),
        ]:
            ack = await mediator.call(event, data)
            assert ack["ok"] is False and ack["error"]["code"] == "bad_request", (event, data, ack)
            assert field in ack["error"].get("fields", {}), (event, ack)
        assert await row_counts(live.db) == before
        assert (await mediator.call("chat.send", {"text": "第一行\n\t第二行"}))["ok"]  # tab and newline are text
    finally:
        await mediator.close()


async def test_leaving_releases_everything_and_rejoin_returns_to_the_room(live, media):
    hub = live.app["hub"]
    hub.empty_room_grace = 0  # let go of the empty room at once (normally kept for a while)
    mediator = Peer(live.url, await live.token("mediator"), media)
    token = await live.token("party", party_id=live.party_ids[0])
    party = Peer(live.url, token, media)
    try:
        await mediator.join()
        await party.join()
        await mediator.call("lobby.admit", {"participant_id": party.me["id"]})
        await party.publish()
        room = hub.rooms[live.room_id].room
        await wait_for(lambda: mediator.frames_from(party.me["id"]) > 3, what="media flowing")
        pid = party.me["id"]
        # A dropped connection (no 'leave'): the party's place is held for a while, shown to the
        # others as reconnecting; then everything of the party is released.
        hub.hold_grace = 1.5
        await party.sio.disconnect()
        await wait_for(lambda: any(x["id"] == pid and x["connection"] == "reconnecting"
                                   for x in mediator.state["participants"]), what="held, shown as reconnecting")
        assert pid in room.participants
        await wait_for(lambda: pid not in room.participants, timeout=5, what="release after the hold")
        assert all(p.participant_id != pid for p in room.producers())
        await wait_for(lambda: all(x["id"] != pid for x in mediator.state["participants"]), what="state shows it")
        # Rejoining with the same link goes straight back to the main room.
        again = Peer(live.url, token, media)
        ack = await again.join()
        assert ack["ok"] and not ack["in_lobby"]
        await again.publish()
        await wait_for(lambda: mediator.frames_from(pid) > 10, what="media again after rejoin")
        assert (await again.call("leave"))["ok"]
        await again.close()
        await mediator.call("leave")
        await wait_for(lambda: live.room_id not in hub.rooms, what="empty room is dropped")
    finally:
        await party.close()
        await mediator.close()


async def test_session_end_tells_everyone_and_voids_the_links(live, media):
    mediator = Peer(live.url, await live.token("mediator"), media)
    party_token = await live.token("party", party_id=live.party_ids[0])
    party = Peer(live.url, party_token, media)
    try:
        await mediator.join()
        await party.join()
        ack = await party.call("session.end")
        assert ack["error"]["code"] == "not_joined" or not ack["ok"]
        assert (await mediator.call("session.end"))["ok"]
        await wait_for(lambda: party.events["session.ended"], what="session.ended")
        late = Peer(live.url, party_token, media)
        ack = await late.join()
        assert ack["error"]["code"] == "session_ended"
        await late.close()
        assert live.room_id not in live.app["hub"].rooms
    finally:
        await party.close()
        await mediator.close()


async def test_remove_participant_and_replaced_connection(live, media):
    mediator = Peer(live.url, await live.token("mediator"), media)
    token = await live.token("party", party_id=live.party_ids[1])
    first = Peer(live.url, token, media)
    try:
        await mediator.join()
        await first.join()
        # The same person from a second tab of the same browser (it has the device's secret)
        # replaces the first.
        second = Peer(live.url, token, media, resume=first.resume)
        await second.join()
        await wait_for(lambda: first.events["removed"], what="replaced notice")
        assert first.events["removed"][0]["reason"] == "replaced"
        room = live.app["hub"].rooms[live.room_id].room
        assert len([p for p in room.participants.values() if p.role == "party"]) == 1
        ack = await mediator.call("participant.remove", {"participant_id": second.me["id"]})
        assert ack["ok"]
        await wait_for(lambda: second.events["removed"], what="removed notice")
        assert second.me["id"] not in room.participants
        # The removed person is out: their events are refused now.
        assert (await second.call("chat.send", {"text": "还在吗"}))["error"]["code"] == "not_joined"
    finally:
        for p in (first, second, mediator):
            await p.close()


async def test_a_dropped_party_coming_back_carries_on_where_it_was(live, media):
    """A party's connection drops (a new network address, say) and a new connection joins with the
    same link within the hold: the party is resumed, not entered anew. It keeps its caucus; its
    producers are the same ones, so the mediator's subscribe connection is not renegotiated and
    the mediator decodes the party's video on the very same track again."""
    hub = live.app["hub"]
    mediator = Peer(live.url, await live.token("mediator"), media)
    token = await live.token("party", party_id=live.party_ids[0])
    party = again = Peer(live.url, token, media)
    try:
        await mediator.join()
        await mediator.publish()
        await party.join()
        again = Peer(live.url, token, media, resume=party.resume)  # the same phone, a new connection
        await mediator.call("lobby.admit", {"participant_id": party.me["id"]})
        pid = party.me["id"]
        caucus = (await mediator.call("caucus.create", {"name": "单独谈"}))["caucus_id"]
        for who in (pid, mediator.me["id"]):  # a private session with the party
            assert (await mediator.call("participant.move", {"participant_id": who, "to": caucus}))["ok"]
        await party.publish()
        await wait_for(lambda: mediator.frames_from(pid) > 5, what="mediator decodes the party")
        await wait_for(lambda: party.frames_from(mediator.me["id"]) > 5, what="party decodes the mediator")
        room = hub.rooms[live.room_id].room
        producers = sorted(p.id for p in room.producers() if p.participant_id == pid)
        offers_to_mediator = room.participants[mediator.me["id"]].subscribe.offers_sent

        # The old connection is gone without a word (its socket and its media both).
        await party.drop()
        await wait_for(lambda: room.participants[pid].away, what="the party is held")
        before = mediator.frames_from(pid)
        ack = await again.join()
        assert ack["ok"] and ack["resumed"] and not ack["in_lobby"]
        assert ack["participant"]["id"] == pid
        assert room.participants[pid].area == caucus and not room.participants[pid].away
        assert (await again.publish())["ok"]
        await wait_for(lambda: mediator.frames_from(pid) > before + 10, timeout=10,
                       what="the mediator decodes the resumed party again")
        await wait_for(lambda: again.frames_from(mediator.me["id"]) > 5, timeout=10,
                       what="the resumed party decodes the mediator again")
        assert sorted(p.id for p in room.producers() if p.participant_id == pid) == producers
        assert room.participants[mediator.me["id"]].subscribe.offers_sent == offers_to_mediator
        assert all(x["connection"] == "connected" for x in mediator.state["participants"] if x["id"] == pid) or \
            await _eventually_connected(mediator, pid)
        async with live.db.session() as s:
            actions = [a for (a,) in (await s.execute(select(AuditEntry.action).where(
                AuditEntry.session_id == live.session_id).order_by(AuditEntry.id))).all()]
        assert "participant.reconnected" in actions
        assert actions.count("participant.joined") == 2 and "participant.left" not in actions
    finally:
        await again.close()
        await party.close()
        await mediator.close()


async def _eventually_connected(peer, pid) -> bool:
    await wait_for(lambda: any(x["id"] == pid and x["connection"] == "connected" for x in peer.state["participants"]),
                   timeout=5, what="shown as connected again")
    return True
