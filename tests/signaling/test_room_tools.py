"""The room's tools over signaling (signaling/room_tools.py): lobby messages and sending back to
the lobby, raised hands, mute all with and without hold, caucus timers, broadcast and knock, the
active speaker from the audio-level header extension; each refusal changes nothing and each step
is in the audit chain."""
from __future__ import annotations

import array
import asyncio
import math

from aiortc import AudioStreamTrack, RTCPeerConnection, RTCSessionDescription
from sqlalchemy import select

from server.core.models import AuditEntry
from tests.rooms.clients import client_configuration, wait_for

from .peer import Peer, admitted


def _room(live):
    return live.app["hub"].rooms[live.room_id].room


def _snapshot(live):
    st = _room(live).state()
    return ([(p["id"], p["where"], p["muted"]["audio"], p["hand"], p["held"]) for p in st["participants"]],
            st["caucuses"], st["hands"])


async def _actions(live) -> list[str]:
    async with live.db.session() as s:
        return [e.action for e in (await s.execute(select(AuditEntry).where(
            AuditEntry.session_id == live.session_id).order_by(AuditEntry.seq))).scalars()]


async def test_lobby_message_wait_time_and_send_back(live, media):
    mediator = Peer(live.url, await live.token("mediator"), media)
    await mediator.join()
    a = await admitted(live.url, media, mediator, await live.token("party", party_id=live.party_ids[0]))
    waiting = Peer(live.url, await live.token("party", party_id=live.party_ids[1]), media)
    try:
        ack = await waiting.join()
        assert ack["in_lobby"] and ack["room"]["participants"][0]["lobby_since"]
        wid, aid = waiting.me["id"], a.me["id"]
        await wait_for(lambda: mediator.state and any(p["id"] == wid and p["lobby_since"]
                                                      for p in mediator.state["participants"]), what="wait time")
        before = _snapshot(live)
        # Refusals: a party may not message the lobby; an admitted person is not in the lobby; bad input.
        assert (await a.call("lobby.message", {"text": "hi"}))["error"]["code"] == "forbidden"
        assert (await mediator.call("lobby.message", {"text": "x", "participant_id": aid}))["error"]["code"] == "bad_state"
        assert (await mediator.call("lobby.message", {"text": "x", "participant_id": "nobody"}))["error"]["code"] == "not_found"
        assert (await mediator.call("lobby.message", {"text": "   "}))["error"]["code"] == "bad_request"
        assert _snapshot(live) == before and not waiting.events["lobby.message"]
        ack = await mediator.call("lobby.message", {"text": "请稍候，五分钟后开始。"})
        assert ack["ok"] and ack["recipients"] == 1
        await wait_for(lambda: waiting.events["lobby.message"], what="the lobby hears it")
        assert waiting.events["lobby.message"][0]["text"] == "请稍候，五分钟后开始。"
        assert not a.events["lobby.message"]
        assert (await mediator.call("lobby.message", {"text": "只给你", "participant_id": wid}))["recipients"] == 1

        # Send back to the lobby: only who admits, never the mediator, not from the lobby.
        assert (await a.call("participant.move", {"participant_id": aid, "to": "lobby"}))["error"]["code"] == "forbidden"
        assert (await mediator.call("participant.move", {"participant_id": mediator.me["id"], "to": "lobby"})
                )["error"]["code"] == "bad_request"
        assert (await mediator.call("participant.move", {"participant_id": wid, "to": "lobby"}))["error"]["code"] == "bad_state"
        await wait_for(lambda: mediator.frames_from(aid) > 3, timeout=10, what="mediator sees a")
        assert (await mediator.call("participant.move", {"participant_id": aid, "to": "lobby"}))["ok"]
        assert _room(live).participants[aid].area == "lobby"
        await wait_for(lambda: a.state and [p["id"] for p in a.state["participants"]] == [aid], what="a sees the lobby")
        await asyncio.sleep(0.5)
        seen = mediator.frames_from(aid)
        await asyncio.sleep(1.5)
        assert mediator.frames_from(aid) <= seen + 1, "a's media is still forwarded from the lobby"
        # ...and can be admitted again.
        assert (await mediator.call("lobby.admit", {"participant_id": aid}))["ok"]
        await wait_for(lambda: mediator.frames_from(aid) > seen + 5, timeout=10, what="a is seen again")
    finally:
        for p in (waiting, a, mediator):
            await p.close()
    actions = await _actions(live)
    assert actions.count("lobby.message") == 2 and "participant.moved" in actions


async def test_hands_mute_all_and_hold(live, media):
    mediator = Peer(live.url, await live.token("mediator"), media)
    await mediator.join()
    a = await admitted(live.url, media, mediator, await live.token("party", party_id=live.party_ids[0]))
    b = await admitted(live.url, media, mediator, await live.token("party", party_id=live.party_ids[1]))
    aid, bid, mid = a.me["id"], b.me["id"], mediator.me["id"]
    try:
        assert (await b.call("hand.raise"))["hands"] == [bid]
        assert (await a.call("hand.raise"))["hands"] == [bid, aid]
        assert (await b.call("hand.raise"))["hands"] == [bid, aid]  # again: keeps its place
        await wait_for(lambda: len(mediator.events["hand.raised"]) == 2, what="the mediator is told")
        await wait_for(lambda: mediator.state["hands"] == [bid, aid], what="queue in room.state")
        before = _snapshot(live)
        assert (await a.call("hand.lower", {"participant_id": bid}))["error"]["code"] == "forbidden"
        assert (await a.call("hand.lower", {"participant_id": "nobody"}))["error"]["code"] == "not_found"
        assert _snapshot(live) == before
        assert (await mediator.call("hand.lower", {"participant_id": bid}))["hands"] == [aid]
        assert (await a.call("hand.lower"))["hands"] == []

        # Mute all with hold: a party cannot unmute; the server forwards none of their audio.
        assert (await a.call("participant.mute_all", {"hold": True}))["error"]["code"] == "forbidden"
        assert (await mediator.call("participant.mute_all", {"hold": "maybe"}))["error"]["code"] == "bad_request"
        ack = await mediator.call("participant.mute_all", {"hold": True})
        assert sorted(ack["muted"]) == sorted([aid, bid])
        await wait_for(lambda: a.events["muted"] and b.events["muted"], what="told they are muted")
        assert a.events["muted"][0]["hold"] is True
        room = _room(live)
        hub = live.app["hub"]
        assert sorted(hub.snapshot(hub.rooms[live.room_id])["held"]) == sorted([aid, bid])  # kept for another node
        assert not room.participants[mid].muted["audio"]
        assert all(p.paused for p in room.participants[aid].producers.values() if p.kind == "audio")
        refused = await a.call("media.mute", {"kind": "audio", "muted": False})
        assert refused["error"]["code"] == "forbidden" and room.participants[aid].muted["audio"]
        assert (await a.call("media.mute", {"kind": "video", "muted": True}))["ok"]  # video is theirs
        assert (await a.call("participant.release", {}))["error"]["code"] == "forbidden"
        # Released one by one: b may unmute, a is still held.
        assert (await mediator.call("participant.release", {"participant_id": bid}))["released"] == [bid]
        await wait_for(lambda: b.events["released"], what="b told")
        assert (await b.call("media.mute", {"kind": "audio", "muted": False}))["ok"]
        assert (await a.call("media.mute", {"kind": "audio", "muted": False}))["error"]["code"] == "forbidden"
        # Mute all without hold lets go of the hold: each can unmute.
        assert (await mediator.call("participant.mute_all", {}))["ok"]
        assert room.participants[bid].muted["audio"]
        assert (await a.call("media.mute", {"kind": "audio", "muted": False}))["ok"]
        assert not room.participants[aid].muted["audio"]
    finally:
        for p in (b, a, mediator):
            await p.close()
    actions = await _actions(live)
    assert actions.count("participant.hand_raised") == 2 and actions.count("participant.hand_lowered") == 2
    assert actions.count("participant.muted_all") == 2 and "participant.released" in actions


async def test_caucus_timer_broadcast_and_knock(live, media):
    mediator = Peer(live.url, await live.token("mediator"), media)
    await mediator.join()
    a = await admitted(live.url, media, mediator, await live.token("party", party_id=live.party_ids[0]))
    b = await admitted(live.url, media, mediator, await live.token("party", party_id=live.party_ids[1]))
    aid = a.me["id"]
    try:
        assert (await mediator.call("caucus.create", {"name": "x", "minutes": 0}))["error"]["code"] == "bad_request"
        assert not _room(live).caucuses
        caucus = (await mediator.call("caucus.create", {"name": "与申请人单独谈", "minutes": 10}))["caucus_id"]
        assert _room(live).caucus_ends[caucus]
        hub = live.app["hub"]
        assert caucus in hub.snapshot(hub.rooms[live.room_id])["caucus_ends"]
        assert (await mediator.call("participant.move", {"participant_id": aid, "to": caucus}))["ok"]
        await wait_for(lambda: a.state and any(c["id"] == caucus and c["ends_at"] for c in a.state["caucuses"]),
                       what="a sees the timer")
        before = _snapshot(live)
        assert (await a.call("caucus.timer", {"caucus_id": caucus, "minutes": 5}))["error"]["code"] == "forbidden"
        assert (await mediator.call("caucus.timer", {"caucus_id": "nope", "minutes": 5}))["error"]["code"] == "not_found"
        assert (await mediator.call("caucus.timer", {"caucus_id": caucus, "minutes": 999}))["error"]["code"] == "bad_request"
        assert (await b.call("caucus.knock"))["error"]["code"] == "bad_state"  # b is in the main room
        assert (await a.call("caucus.broadcast", {"text": "hi"}))["error"]["code"] == "forbidden"
        assert _snapshot(live) == before and not mediator.events["caucus.knocked"]
        assert (await mediator.call("caucus.timer", {"caucus_id": caucus, "minutes": 3}))["ends_at"]
        assert (await mediator.call("caucus.timer", {"caucus_id": caucus, "minutes": 0}))["ends_at"] is None
        assert caucus not in _room(live).caucus_ends

        ack = await mediator.call("caucus.broadcast", {"text": "还有五分钟回到主会场"})
        assert ack["recipients"] == 1
        await wait_for(lambda: a.events["caucus.broadcast"], what="the caucus hears it")
        assert not b.events["caucus.broadcast"]

        assert (await a.call("caucus.knock"))["told"] == 1
        await wait_for(lambda: mediator.events["caucus.knocked"], what="the mediator hears the knock")
        knock = mediator.events["caucus.knocked"][0]
        assert knock["caucus"] == "与申请人单独谈" and knock["caucus_id"] == caucus and knock["participant_id"] == aid
        # Knocking again at once tells the mediator nothing new: refused, nothing sent, nothing written.
        again = await a.call("caucus.knock")
        assert again["error"]["code"] == "rate_limited" and "10 s" in again["error"]["message"], again
        await asyncio.sleep(0.3)
        assert len(mediator.events["caucus.knocked"]) == 1
    finally:
        for p in (b, a, mediator):
            await p.close()
    actions = await _actions(live)
    assert {"caucus.timer", "caucus.broadcast", "caucus.knocked"} <= set(actions)


class Tone(AudioStreamTrack):
    """A live microphone for aiortc: its encoder writes each frame's level into the audio-level
    header extension (the pre-encoded test media carry none). Silent unless `loud`."""

    def __init__(self, loud: bool):
        super().__init__()
        self.loud = loud
        self.n = 0

    async def recv(self):
        frame = await super().recv()
        if self.loud:
            count = frame.samples
            samples = array.array("h", (int(12000 * math.sin(2 * math.pi * 440 * (self.n + i) / 48000))
                                        for i in range(count)))
            frame.planes[0].update(samples.tobytes())
            self.n += count
        return frame


async def _publish_tone(peer: Peer, loud: bool) -> None:
    peer.pub = RTCPeerConnection(client_configuration())
    peer.pub.addTransceiver(Tone(loud), direction="sendonly")
    await peer.pub.setLocalDescription(await peer.pub.createOffer())
    ack = await peer.call("rtc.offer", {"sdp": peer.pub.localDescription.sdp, "type": "offer"})
    assert ack["ok"], ack
    await peer.pub.setRemoteDescription(RTCSessionDescription(sdp=ack["sdp"], type=ack["type"]))


async def test_active_speaker_from_audio_levels(live, media):
    """The one whose microphone carries a voice becomes the area's active speaker, the silent one
    never; muted, the speaker is let go."""
    mediator = Peer(live.url, await live.token("mediator"), media)
    await mediator.join()
    a = Peer(live.url, await live.token("party", party_id=live.party_ids[0]), media)
    try:
        ack = await a.join()
        assert (await mediator.call("lobby.admit", {"participant_id": a.me["id"]}))["ok"]
        await _publish_tone(mediator, loud=False)
        await _publish_tone(a, loud=True)
        await wait_for(lambda: mediator.events["speaker.active"], timeout=10, what="an active speaker")
        assert mediator.events["speaker.active"][0] == {"participant_id": a.me["id"], "area": "main"}
        assert a.events["speaker.active"][0]["participant_id"] == a.me["id"]
        assert _room(live).state()["speakers"] == {"main": a.me["id"]}
        assert (await a.call("media.mute", {"kind": "audio", "muted": True}))["ok"]
        await wait_for(lambda: mediator.events["speaker.active"][-1]["participant_id"] is None, what="let go")
        assert all(e["participant_id"] != mediator.me["id"] for e in mediator.events["speaker.active"])
    finally:
        for p in (a, mediator):
            await p.close()
