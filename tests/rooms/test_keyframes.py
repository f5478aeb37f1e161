"""Keyframe relay: PLIs reach the publisher on its primary SSRC, rate-limited."""

from __future__ import annotations

import asyncio
import time

from aiortc.rtp import RTCP_PSFB_PLI

from rooms import media as rooms_media
from rooms import aiortc_hooks as hooks

from .clients import wait_for


async def test_new_consumer_relays_pli_to_primary_ssrc(harness, media):
    room = harness.room
    m = await harness.join("mediator", "mediator")
    # Let the publisher run past its first keyframe: a late viewer now needs a new one.
    await wait_for(lambda: m.video_track.sent > 20, what="publisher running")
    plis_before = len(m.plis)
    assert m.video_track.keyframes_sent == 1

    a = await harness.join("alice", publish=False)
    await wait_for(lambda: a.decoded["video"]["mediator"] >= 3, what="late viewer decodes")

    ssrc, rtx_ssrc = hooks.sender_ssrcs(m.video_sender)
    new_plis = m.plis[plis_before:]
    assert new_plis, "no PLI reached the publisher"
    assert all(fmt == RTCP_PSFB_PLI and media_ssrc == ssrc for _, fmt, media_ssrc in new_plis)
    assert all(media_ssrc != rtx_ssrc for _, _, media_ssrc in new_plis)
    assert m.video_track.keyframes_sent >= 2
    # The viewer's stream started exactly at the keyframe its PLI asked for.
    assert a.payloads[0] == ("mediator", media.vp8[0])
    consumer = next(c for c in room.participant("alice").subscribe.consumers.values() if c.producer.kind == "video")
    assert not consumer.waiting_keyframe and consumer.frames >= 3


async def test_keyframe_requests_are_rate_limited_per_producer(harness):
    room = harness.room
    m = await harness.join("mediator", "mediator")
    a = await harness.join("alice", publish=False)
    await wait_for(lambda: a.decoded["video"]["mediator"] >= 3, what="viewer decodes")
    await asyncio.sleep(rooms_media.PLI_INTERVAL + 0.1)
    producer = next(p for p in room.producers() if p.kind == "video")
    consumer = next(iter(producer.consumers.values()))

    start = time.monotonic()
    plis_before = len(m.plis)
    sent_before = producer.plis_sent
    while time.monotonic() - start < 1.2:
        consumer.request_keyframe()  # e.g. a viewer hammering PLIs
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    sent = producer.plis_sent - sent_before
    # At most one per 500 ms window (+ the trailing one), never one per request.
    assert 2 <= sent <= 4, sent
    await wait_for(lambda: len(m.plis) - plis_before >= sent, what="PLIs at the publisher")
    assert len(m.plis) - plis_before == sent


async def test_viewer_pli_is_relayed_to_the_publisher(harness):
    room = harness.room
    m = await harness.join("mediator", "mediator")
    a = await harness.join("alice", publish=False)
    await wait_for(lambda: a.decoded["video"]["mediator"] >= 3, what="viewer decodes")
    await asyncio.sleep(rooms_media.PLI_INTERVAL + 0.1)
    plis_before = len(m.plis)
    keyframes_before = m.video_track.keyframes_sent

    # The viewer's receiver reports picture loss over real RTCP to the server's sender.
    transceiver = next(t for t in a.sub.getTransceivers() if t.kind == "video")
    server_sender = next(t.sender for t in room.participant("alice").subscribe.pc.getTransceivers() if t.kind == "video")
    await transceiver.receiver._send_rtcp_pli(hooks.sender_ssrcs(server_sender)[0])

    await wait_for(lambda: len(m.plis) > plis_before, what="relayed PLI")
    assert m.plis[-1][2] == hooks.sender_ssrcs(m.video_sender)[0]
    await wait_for(lambda: m.video_track.keyframes_sent > keyframes_before, what="new keyframe")


class ListSink:
    """A recorder-like sink: keeps what it gets; can simulate a full buffer."""

    def __init__(self):
        self.frames = []
        self.full = False
        self.closed = False

    def push(self, frame):
        if self.full:
            return False
        self.frames.append(frame)
        return True

    def close(self):
        self.closed = True


async def test_sink_consumer_starts_at_keyframe_and_recovers_from_overflow(harness, media):
    room = harness.room
    m = await harness.join("mediator", "mediator")
    await wait_for(lambda: m.video_track.sent > 10, what="publisher running")
    producer = next(p for p in room.producers() if p.kind == "video")
    audio = next(p for p in room.producers() if p.kind == "audio")

    sink = ListSink()
    consumer = room.attach_sink(producer.id, sink)
    audio_sink = ListSink()
    room.attach_sink(audio.id, audio_sink)
    await wait_for(lambda: len(sink.frames) >= 5 and len(audio_sink.frames) >= 5, what="recorder frames")
    assert sink.frames[0].keyframe and sink.frames[0].data == media.vp8[0]
    assert all(f.data in media.vp8_set for f in sink.frames)
    packet = sink.frames[0].to_av_packet()
    assert packet.pts == sink.frames[0].pts and packet.time_base.denominator == 90000 and packet.is_keyframe
    assert audio_sink.frames[0].codec == "audio/opus" and audio_sink.frames[0].clock_rate == 48000
    # pts are RTP timestamps: 3000 ticks per frame at 30 fps
    assert sink.frames[2].pts - sink.frames[1].pts == 3000

    # Overflow: the sink drops, the consumer waits for (and asks for) a new keyframe.
    keyframes = m.video_track.keyframes_sent
    sink.full = True
    await wait_for(lambda: consumer.overflows >= 1, what="overflow")
    sink.full = False
    count = len(sink.frames)
    await wait_for(lambda: len(sink.frames) > count + 2, what="recovery")
    assert sink.frames[count].keyframe
    assert m.video_track.keyframes_sent > keyframes

    consumer.close()
    assert sink.closed and consumer.id not in producer.consumers
