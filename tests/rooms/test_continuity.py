"""The packet path keeps each viewer's streams continuous (rooms/media.py, Consumer): whatever
the server holds back or changes underneath, the viewer sees one SSRC per m-line, sequence
numbers without a gap and timestamps that advance with the time passed: across a pause of the
video (adaptation), a keyframe wait (a loss on the publisher's uplink), a caucus move of the
publisher (the viewer's m-line goes inactive and is reused) and a mute."""

from __future__ import annotations

import asyncio
import time

from rooms import aiortc_hooks as hooks
from rooms.aiortc_hooks import PacketSender
from rooms.media import PAUSED, REDUCED, FULL, Consumer

from .clients import wait_for


def watch_rtp(client) -> dict:
    """Every RTP packet the client's subscribe connection receives, per mid: (arrival, seq, ts,
    ssrc, payload type), before the client's jitter buffer (what went over the wire)."""
    seen: dict = {}
    for transceiver in client.sub.getTransceivers():
        receiver = transceiver.receiver
        if getattr(receiver, "_test_watched", False):
            continue
        receiver._test_watched = True
        original = receiver._handle_rtp_packet

        async def handle(packet, arrival_time_ms, mid=transceiver.mid, original=original):
            seen.setdefault(mid, []).append(
                (time.monotonic(), packet.sequence_number, packet.timestamp, packet.ssrc, packet.payload_type))
            await original(packet, arrival_time_ms=arrival_time_ms)

        receiver._handle_rtp_packet = handle
    return seen


def assert_continuous(packets: list, clock_rate: int, what: str) -> int:
    """One SSRC, each sequence number the last + 1, timestamps never back and, over every pause
    in the stream, advanced by the time that passed. Returns the number of pauses seen."""
    media = [p for p in packets if p[4] == packets[0][4]]  # not RTX (none on loopback, anyway)
    assert len({p[3] for p in media}) == 1, f"{what}: the SSRC changed"
    pauses = 0
    for before, after in zip(media, media[1:]):
        assert after[1] == (before[1] + 1) & 0xFFFF, f"{what}: sequence {before[1]} -> {after[1]}"
        dts = (after[2] - before[2]) & 0xFFFFFFFF
        assert dts < 0x80000000, f"{what}: timestamp went back ({before[2]} -> {after[2]})"
        gap = after[0] - before[0]
        if gap > 0.25:  # a pause: the timeline went on as the clock did
            pauses += 1
            assert abs(dts / clock_rate - gap) < 0.15, f"{what}: {gap:.2f} s passed, timestamps say {dts / clock_rate:.2f} s"
    return pauses


def mid_of(client, publisher: str, kind: str) -> str:
    return next(mid for mid, row in client.tracks.items() if row["participant_id"] == publisher and row["kind"] == kind)


async def test_a_viewers_streams_stay_continuous_across_pause_keyframe_wait_caucus_and_mute(harness, media):
    room = harness.room
    await harness.join("mediator", "mediator")
    a = await harness.join("alice")
    b = await harness.join("bob", publish=False)
    await wait_for(lambda: b.decoded["video"]["alice"] >= 5, what="bob sees alice")
    seen = watch_rtp(b)
    video_mid, audio_mid = mid_of(b, "alice", "video"), mid_of(b, "alice", "audio")
    bob = room.participant("bob").subscribe

    def consumer(kind: str) -> Consumer:
        return next(c for c in bob.consumers.values() if c.producer.participant_id == "alice" and c.producer.kind == kind)

    async def frames_again(what: str) -> None:
        count = b.decoded["video"]["alice"]
        await wait_for(lambda: b.decoded["video"]["alice"] >= count + 5, timeout=10, what=what)

    await frames_again("video before the pause")
    room.adaptation.tick = lambda *args, **kwargs: False  # the test sets the levels itself
    # 1. A pause (adaptation: the viewer's link is too narrow), then full again: from a keyframe.
    consumer("video").set_level(PAUSED)
    await asyncio.sleep(0.6)
    assert consumer("video").held > 0
    consumer("video").set_level(FULL)
    await frames_again("video after the pause")
    # 2. A keyframe wait: the publisher's uplink lost a frame for good.
    producer = consumer("video").producer
    keyframes = a.video_track.keyframes_sent
    producer._on_loss()
    producer.request_keyframe()
    await asyncio.sleep(0.4)  # the publisher's keyframe comes after the rate limit's window
    await wait_for(lambda: a.video_track.keyframes_sent > keyframes, what="a new keyframe")
    await frames_again("video after the keyframe wait")
    # 3. Alice goes into a caucus and comes back: bob's m-lines for her go inactive, then carry
    # her again (new consumers on the same legs).
    offers = b.offers
    caucus = room.create_caucus("alice alone", by="mediator")
    room.move("alice", caucus, by="mediator")
    await wait_for(lambda: b.offers > offers, what="renegotiation")
    await asyncio.sleep(0.6)
    room.close_caucus(caucus, by="mediator")
    await frames_again("video after the caucus")
    assert mid_of(b, "alice", "video") == video_mid and mid_of(b, "alice", "audio") == audio_mid
    # 4. Alice mutes her camera and microphone for a while.
    room.mute("alice", "video", True)
    room.mute("alice", "audio", True)
    await asyncio.sleep(0.6)
    room.mute("alice", "video", False)
    room.mute("alice", "audio", False)
    await frames_again("video after the mute")
    await asyncio.sleep(0.3)

    video_pauses = assert_continuous(seen[video_mid], 90000, "alice's video at bob")
    audio_pauses = assert_continuous(seen[audio_mid], 48000, "alice's audio at bob")
    assert video_pauses >= 4, video_pauses  # the pause, the keyframe wait, the caucus, the mute
    assert audio_pauses >= 2, audio_pauses  # the caucus, the mute
    # Every restart of bob's picture began at a keyframe, and the bytes are the publisher's.
    assert all(data in media.vp8_set for _, data in b.payloads)
    assert not b.errors


class FakeLeg(PacketSender):
    """A PacketSender that keeps what it would send instead of encrypting it."""

    __slots__ = ("sent",)

    def __init__(self) -> None:  # no aiortc sender behind it
        self.sent = []
        self.next_seq, self.last_ts, self.last_wall, self.sent_any, self.clock_rate = 1000, 5000, 0.0, False, 90000
        self.ready = True

    def send(self, seq, ts, marker, payload, abs3, level, now, fresh):  # type: ignore[override]
        self.sent.append((seq, ts, marker, payload))
        if fresh:
            self.next_seq, self.last_ts, self.last_wall, self.sent_any = (seq + 1) & 0xFFFF, ts, now, True


class FakeProducer:
    kind = "video"
    epoch = 0
    small = None
    id = "pr"

    def attach(self, consumer):
        pass

    def detach(self, consumer):
        pass

    def request_keyframe(self):
        pass


def test_temporal_layers_dropped_and_late_packets_keep_the_numbering(media):
    """`reduced` per packet: layers above 0 are left out and the numbers close up behind them;
    a packet lost on the way in and retransmitted later goes out under the number kept for it."""
    leg = FakeLeg()
    c = Consumer("co", FakeProducer(), sink=None, subscriber_id="v", packets=leg)  # type: ignore[arg-type]
    c.set_level(REDUCED)
    seq, ts, now = 65530, 1_000_000, 100.0  # the incoming numbers wrap on the way
    frames = []  # (first seq, packets, tid, key)
    for i, tid in enumerate([0, 2, 1, 2, 0, 2, 1, 2, 0]):
        frames.append((seq, 2, tid, i == 0))
        seq = (seq + 2) & 0xFFFF
    late = frames[4][0] + 1  # the second packet of the second layer-0 frame comes late
    for first, count, tid, key in frames:
        for k in range(count):
            s = (first + k) & 0xFFFF
            if s == late:
                continue
            c.on_packet(s, ts + 3000 * frames.index((first, count, tid, key)), int(k == count - 1), b"x%d" % s,
                        tid, k == 0, key and k == 0, b"\0\0\0", None, now)
        now += 0.033
    f4 = frames[4]
    c.on_packet(late, ts + 3000 * 4, 1, b"late", 0, False, False, b"\0\0\0", None, now)
    out = [s for s, _, _, _ in leg.sent]
    # Layer 0 only: frames 0, 4, 8; 6 packets on six consecutive numbers from the leg's next.
    assert sorted(out) == list(range(1000, 1006)), out
    assert leg.sent[-1][3] == b"late" and leg.sent[-1][0] == 1003  # the number kept for it
    assert c.held == 6 and f4[2] == 0


def test_a_frame_lost_whole_on_the_way_in_goes_out_when_it_comes_again(media):
    """One-packet frames (the delta frames of a narrow uplink): when the publisher's retransmission
    of a frame lost whole arrives, the frame goes out under the number kept for it (it used to be
    dropped, and every viewer waited for a keyframe); a frame of a layer the viewer does not get
    stays out."""
    sent = {}
    for level in (FULL, REDUCED):
        leg = FakeLeg()
        c = Consumer("co", FakeProducer(), sink=None, subscriber_id="v", packets=leg)  # type: ignore[arg-type]
        c.set_level(level)
        ts, now = 1_000_000, 100.0
        tids = [0, 2, 1, 2, 0]  # one packet each; frames 1 (layer 2) and 2 (layer 1) lost at first
        for i, tid in enumerate(tids):
            if i not in (1, 2):
                c.on_packet(500 + i, ts + 3000 * i, 1, b"f%d" % i, tid, True, i == 0, b"\0\0\0", None, now)
            now += 0.033
        for i in (2, 1):  # they come again, in another order
            c.on_packet(500 + i, ts + 3000 * i, 1, b"f%d" % i, tids[i], True, False, b"\0\0\0", None, now)
        sent[level] = {payload: seq for seq, _, _, payload in leg.sent}
    # Five frames on five numbers, each in its own place: no gap at the viewer.
    assert sent[FULL] == {b"f0": 1000, b"f1": 1001, b"f2": 1002, b"f3": 1003, b"f4": 1004}, sent
    # Layer 0 only: the places kept for the two lost frames stay empty (a layer-0 frame refers
    # to layer 0 alone), the layer-2 frame that came in time closed up behind it.
    assert sent[REDUCED] == {b"f0": 1000, b"f4": 1003}, sent


async def test_nacks_are_answered_from_the_legs_buffer_and_sender_reports_follow_the_leg(harness):
    room = harness.room
    await harness.join("mediator", "mediator")
    b = await harness.join("bob", publish=False)
    await wait_for(lambda: b.decoded["video"]["mediator"] >= 5, what="bob sees the mediator")
    seen = watch_rtp(b)
    video_mid = mid_of(b, "mediator", "video")
    transceiver = next(t for t in b.sub.getTransceivers() if t.mid == video_mid)
    leg = next(s.packets for s in room.participant("bob").subscribe.slots if s.transceiver.mid == video_mid)
    await wait_for(lambda: len(seen.get(video_mid, [])) > 20, what="packets at bob")
    _, lost, _, ssrc, media_pt = seen[video_mid][-5]
    assert ssrc == leg.ssrc and leg.rtx_pt is not None
    # Bob says he lost one: it comes again, as RTX (its own SSRC, the original number first).
    await transceiver.receiver._send_rtcp_nack(ssrc, [lost])
    await wait_for(lambda: any(p[4] == leg.rtx_pt for p in seen[video_mid]), what="the retransmission")
    rtx = next(p for p in seen[video_mid] if p[4] == leg.rtx_pt)
    assert rtx[3] == leg.rtx_ssrc and leg.retransmits == 1
    # Sender reports: bob's receiver has one for the leg's SSRC, and answers it in its receiver
    # reports, from which the server measures the round trip (rooms/adaptation.py uses it).
    await wait_for(lambda: ssrc in transceiver.receiver._RTCRtpReceiver__lsr, timeout=4, what="a sender report")
    await wait_for(lambda: hooks.sender_rtt(leg.sender) is not None, timeout=6, what="the round trip")
    assert -0.05 < hooks.sender_rtt(leg.sender) < 0.2  # aiortc's estimate can dip below 0 on loopback


async def test_a_renewed_publisher_continues_the_viewers_streams(harness, media):
    """Room.renew (docs/protocol.md, "Coming back"): the new connection's source has its own
    SSRC, sequence numbers and timestamps; the viewer's legs carry on without a seam."""
    from .clients import Client

    room = harness.room
    m = await harness.join("mediator", "mediator")
    a = await harness.join("alice")
    await wait_for(lambda: m.decoded["video"]["alice"] >= 5, what="the mediator sees alice")
    seen = watch_rtp(m)
    video_mid, audio_mid = mid_of(m, "alice", "video"), mid_of(m, "alice", "audio")
    await asyncio.sleep(0.3)
    await a.close()
    back = Client(room, "alice", media)
    harness.clients["alice"] = back
    await room.renew("alice")
    await asyncio.sleep(0.3)
    await back.publish()
    decoded = m.decoded["video"]["alice"]
    await wait_for(lambda: m.decoded["video"]["alice"] > decoded + 10, timeout=10, what="alice's video again")
    assert assert_continuous(seen[video_mid], 90000, "alice's video at the mediator") >= 1
    assert assert_continuous(seen[audio_mid], 48000, "alice's audio at the mediator") >= 1
