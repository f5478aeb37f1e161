"""Screen sharing over signaling (docs/protocol.md, "Screen sharing"): a party's share by a re-offer
naming its m-line "screen"; refusals with clear errors that change nothing (an unknown role, a
role on a missing m-line, a party stopping another's share, stopping a share nobody runs); the
mediator stops it, the sharer's page is told, and the record says who stopped whose share."""
from __future__ import annotations

from aiortc import RTCSessionDescription
from sqlalchemy import select

from server.core.models import AuditEntry
from tests.rooms.clients import EncodedTrack, wait_for

from .peer import Peer, admitted


async def _actions(live) -> list:
    async with live.db.session() as s:
        return (await s.execute(select(AuditEntry).where(AuditEntry.session_id == live.session_id)
                                .order_by(AuditEntry.seq))).scalars().all()


async def test_a_partys_share_is_refused_when_wrong_and_stopped_by_the_mediator(live, media):
    mediator = Peer(live.url, await live.token("mediator"), media)
    await mediator.join()
    a = await admitted(live.url, media, mediator, await live.token("party", party_id=live.party_ids[0]))
    b = await admitted(live.url, media, mediator, await live.token("party", party_id=live.party_ids[1]))
    peers = [mediator, a, b]
    try:
        room = live.app["hub"].rooms[live.room_id].room
        assert (await a.publish())["ok"]
        screen = a.pub.addTransceiver(EncodedTrack("video", media.vp8), direction="sendonly")
        await a.pub.setLocalDescription(await a.pub.createOffer())
        sdp = a.pub.localDescription.sdp
        before = len(await _actions(live))
        for tracks, code in (({screen.mid: "big"}, "bad_request"),        # no such role (the schema)
                             ({"nope": "screen"}, "bad_request")):        # no such m-line
            ack = await a.call("rtc.offer", {"sdp": sdp, "type": "offer", "tracks": tracks})
            assert not ack["ok"] and ack["error"]["code"] == code, ack
        assert not any(p.role == "screen" for p in room.participant(a.me["id"]).producers.values())
        ack = await a.call("rtc.offer", {"sdp": sdp, "type": "offer", "tracks": {screen.mid: "screen"}})
        assert ack["ok"], ack
        await a.pub.setRemoteDescription(RTCSessionDescription(sdp=ack["sdp"], type=ack["type"]))
        await wait_for(lambda: any(r.get("role") == "screen" and r["active"] for r in mediator.tracks.values()),
                       what="the share in the mediator's track table")
        sharing = lambda: any(p["role"] == "screen" for x in mediator.state["participants"]  # noqa: E731
                              if x["id"] == a.me["id"] for p in x["producers"])
        await wait_for(sharing, what="the share in room.state")

        # Refused, and nothing changes: another party stops it; stopping a share nobody runs; bad shapes.
        for peer, data, code in ((b, {"participant_id": a.me["id"]}, "forbidden"),
                                 (mediator, {"participant_id": b.me["id"]}, "bad_state"),
                                 (mediator, {"participant_id": "nobody"}, "not_found"),
                                 (mediator, {"participant_id": ""}, "bad_request"),
                                 (mediator, {"who": a.me["id"]}, "bad_request")):
            ack = await peer.call("screen.stop", data)
            assert not ack["ok"] and ack["error"]["code"] == code, (data, ack)
        assert sharing() and not a.events["screen.stopped"]
        assert [e.action for e in (await _actions(live))[before:]] == ["screen.started"]

        assert (await mediator.call("screen.stop", {"participant_id": a.me["id"]}))["ok"]
        await wait_for(lambda: a.events["screen.stopped"], what="the sharer told")
        assert a.events["screen.stopped"][0] == {"reason": "stopped_by",
                                                 "by": {"id": mediator.me["id"], "name": mediator.me["name"]}}
        await wait_for(lambda: not sharing(), what="the share gone from room.state")
        await wait_for(lambda: not any(r.get("role") == "screen" and r["active"] for r in mediator.tracks.values()),
                       what="the share's m-line inactive at the mediator")
        rows = await _actions(live)
        started = next(e for e in rows if e.action == "screen.started")
        stopped = next(e for e in rows if e.action == "screen.stopped")
        assert started.data["participant_id"] == a.me["id"] and started.data["area"] == "main"
        assert stopped.data["participant_id"] == a.me["id"] and stopped.data["reason"] == "stopped_by"
        assert stopped.data["stopped_by"]["id"] == mediator.me["id"] and stopped.actor_id == mediator.me["id"]
        # Stopping it again: nothing to stop.
        ack = await mediator.call("screen.stop", {"participant_id": a.me["id"]})
        assert ack["error"]["code"] == "bad_state"
    finally:
        for p in peers:
            await p.close()
