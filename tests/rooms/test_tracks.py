"""Codec pinning (H.264 end to end) and publishers changing their tracks."""

from __future__ import annotations

import asyncio
import collections

from rooms import aiortc_hooks as hooks
from rooms.frames import is_h264_keyframe

from .clients import Client, EncodedTrack, wait_for


async def test_h264_publisher_is_forwarded_as_h264(harness, media):
    room = harness.room
    room.join("mediator", "Mediator", "mediator")
    m = Client(room, "mediator", media)
    harness.clients["mediator"] = m
    await m.publish(h264=True)
    a = await harness.join("alice", publish=False)
    await wait_for(lambda: a.decoded["video"]["mediator"] >= 5, what="H.264 decoded by the viewer")

    producer = next(p for p in room.producers() if p.kind == "video")
    assert producer.mime == "video/h264"
    # The viewer's leg was forced to the very same codec, and only packetizes.
    slot = next(s for s in room.participant("alice").subscribe.slots if s.kind == "video")
    codecs = hooks.negotiated_codecs(slot.transceiver)
    assert codecs[0].mimeType.lower() == "video/h264"
    assert codecs[0].parameters.get("profile-level-id") == producer.codec.parameters.get("profile-level-id")
    assert all(c.mimeType.lower() in ("video/h264", "video/rtx") for c in codecs)
    assert slot.packets is not None and slot.packets.packets_out > 0  # forwarded per packet
    assert is_h264_keyframe(a.payloads[0][1])


async def test_publisher_adds_and_removes_a_screen_share(harness):
    room = harness.room
    m = await harness.join("mediator", "mediator")
    a = await harness.join("alice")
    await wait_for(lambda: m.decoded["video"]["alice"] >= 3, what="camera")

    # Alice starts sharing her screen: a re-offer with a second video m-line.
    screen = EncodedTrack("video", harness.media.vp8)
    screen_transceiver = a.pub.addTransceiver(screen, direction="sendonly")
    a._watch_rtcp(screen_transceiver.sender, screen)  # honour PLIs like a real encoder
    await a.renegotiate_publish()
    alice = room.participant("alice")
    assert len([p for p in alice.producers.values() if p.kind == "video"]) == 2
    await wait_for(
        lambda: len([mid for mid, row in m.tracks.items() if row["participant_id"] == "alice" and row["kind"] == "video" and row["active"]]) == 2,
        what="second video m-line offered",
    )
    video_mids = [mid for mid, row in m.tracks.items() if row["participant_id"] == "alice" and row["kind"] == "video"]
    await wait_for(lambda: all(m.decoded_by_mid[mid] >= 3 for mid in video_mids), what="both alice videos decoded")

    # She stops sharing: the m-line goes inactive, the producer closes, the viewer's
    # m-line goes inactive too.
    screen_transceiver.direction = "inactive"
    await a.renegotiate_publish()
    assert len([p for p in alice.producers.values() if p.kind == "video"]) == 1
    await wait_for(
        lambda: len([row for row in m.tracks.values() if row["participant_id"] == "alice" and row["kind"] == "video"]) == 1,
        what="screen m-line inactive at the viewer",
    )
    await asyncio.sleep(0.2)
    counts = dict(m.decoded_by_mid)
    await asyncio.sleep(0.4)
    active_mid = next(mid for mid, row in m.tracks.items() if row["participant_id"] == "alice" and row["kind"] == "video")
    assert m.decoded_by_mid[active_mid] > counts[active_mid]
    for mid in video_mids:
        if mid != active_mid:
            assert m.decoded_by_mid[mid] == counts[mid]
    assert not m.errors and not a.errors


async def test_retransmissions_repair_loss_on_both_video_m_lines_of_a_publisher(harness):
    """The camera and its small encoding are two video m-lines of the same codecs. Packets lost on
    the publisher's uplink come again as RTX, each to its own m-line's receiver, and complete their
    frames: no frame of either is given up (aiortc alone routes an RTX packet by its payload type,
    which both m-lines share, and dropped every one)."""
    from aiortc import RTCSessionDescription

    room = harness.room
    await harness.join("mediator", "mediator", publish=False)
    room.join("alice", "Alice", "party")
    a = Client(room, "alice", harness.media)
    harness.clients["alice"] = a
    camera, small = EncodedTrack("video", harness.media.vp8), EncodedTrack("video", harness.media.vp8)
    transceivers = [a.pub.addTransceiver(track, direction="sendonly") for track in (camera, small)]
    for transceiver, track in zip(transceivers, (camera, small)):
        a._watch_rtcp(transceiver.sender, track)
    await a.pub.setLocalDescription(await a.pub.createOffer())
    answer = await room.handle_publish_offer("alice", a.pub.localDescription.sdp, "offer",
                                             tracks={transceivers[1].mid: "small"})

    # Uplink loss: every 6th packet of either stream is lost the first time it is sent.
    media_ssrcs = {t.sender._ssrc for t in transceivers}
    dtls = transceivers[0].sender.transport
    original, sent_once, lost = dtls._send_rtp, set(), collections.Counter()

    async def lossy(data: bytes) -> None:
        ssrc, seq = int.from_bytes(data[8:12], "big"), int.from_bytes(data[2:4], "big")
        if ssrc in media_ssrcs and (ssrc, seq) not in sent_once:
            sent_once.add((ssrc, seq))
            if seq % 6 == 0:
                lost[ssrc] += 1
                return
        await original(data)

    dtls._send_rtp = lossy
    await a.pub.setRemoteDescription(RTCSessionDescription(**answer))

    cam = next(p for p in room.participant("alice").producers.values() if p.kind == "video")
    taps = [cam._tap, cam.small._tap]
    await wait_for(lambda: all(t.frames >= 60 for t in taps), timeout=20, what="60 frames of each stream")
    assert all(lost[ssrc] >= 5 for ssrc in media_ssrcs), lost
    assert [(t.frames_given_up, t.dropped_partial) for t in taps] == [(0, 0), (0, 0)]
