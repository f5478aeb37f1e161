"""Codec pinning (H.264 end to end) and publishers changing their tracks."""

from __future__ import annotations

import asyncio

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
