"""The server's receive buffer for a publisher's video (rooms/aiortc_hooks.py, _VideoTapBuffer):
a frame that cannot be completed is given up after FRAME_GIVE_UP, wherever its hole is, and a
frame that is merely slow to arrive is not."""

from __future__ import annotations

import time

from aiortc.rtp import RtpPacket

from rooms import aiortc_hooks as hooks

VP8 = 96


def _buffer():
    tap = hooks.ReceiverTap(None, "video")
    tap.codecs[VP8] = ("video/vp8", 90000)
    got, losses = [], []
    tap.on_frame = got.append
    tap.on_loss = lambda: losses.append(1)
    return hooks._VideoTapBuffer(tap), tap, got, losses


def _packet(seq: int, ts: int, start: bool, marker: bool) -> RtpPacket:
    # VP8 payload descriptor: S bit (0x10) on a frame's first packet, partition 0.
    payload = bytes([0x10 if start else 0x00]) + bytes([seq & 0xFF]) * 20
    packet = RtpPacket(payload_type=VP8, marker=int(marker), sequence_number=seq, timestamp=ts, ssrc=1234)
    packet.payload = payload
    packet._data = payload[1:]
    return packet


def _give_up_wait():
    time.sleep(hooks.FRAME_GIVE_UP + 0.05)


def test_a_hole_inside_the_head_frame_is_given_up_and_what_follows_is_forwarded():
    buf, tap, got, losses = _buffer()
    buf.add(_packet(10, 1000, True, False))
    # 11 is lost: the frame at 1000 can never complete.
    buf.add(_packet(12, 1000, False, True))
    buf.add(_packet(13, 4000, True, True))
    assert got == []
    buf.add(_packet(14, 7000, True, True))
    assert got == []
    _give_up_wait()
    pli, _ = buf.add(_packet(15, 10000, True, True))
    assert [f.pts for f in got] == [4000, 7000, 10000]
    assert tap.frames_given_up == 1 and losses == [1] and pli is True


def test_a_lost_first_packet_is_given_up_and_its_remainder_dropped():
    buf, tap, got, losses = _buffer()
    buf.add(_packet(20, 1000, True, True))
    # 21 (the start of the frame at 4000) is lost.
    buf.add(_packet(22, 4000, False, False))
    buf.add(_packet(23, 4000, False, True))
    buf.add(_packet(24, 7000, True, True))
    assert [f.pts for f in got] == [1000]
    _give_up_wait()
    buf.add(_packet(25, 10000, True, True))
    assert [f.pts for f in got] == [1000, 7000, 10000]
    assert tap.frames_given_up == 1 and losses


def test_a_frame_slow_to_arrive_is_not_given_up():
    buf, tap, got, losses = _buffer()
    buf.add(_packet(30, 1000, True, False))
    _give_up_wait()
    buf.add(_packet(31, 1000, False, False))
    _give_up_wait()
    buf.add(_packet(32, 1000, False, True))
    assert [f.pts for f in got] == [1000]
    assert len(got[0].data) == 3 * 20
    assert tap.frames_given_up == 0 and losses == []


def test_a_retransmission_inside_the_bound_completes_the_frame():
    buf, tap, got, losses = _buffer()
    buf.add(_packet(40, 1000, True, False))
    buf.add(_packet(42, 1000, False, True))
    buf.add(_packet(43, 4000, True, True))
    time.sleep(hooks.FRAME_GIVE_UP / 2)
    buf.add(_packet(41, 1000, False, False))  # the NACKed packet comes back
    assert [f.pts for f in got] == [1000, 4000]
    assert tap.frames_given_up == 0 and losses == []


def test_on_a_long_round_trip_the_retransmission_is_waited_for():
    """600 ms to the publisher and back: a retransmission cannot come within FRAME_GIVE_UP, so the
    bound stretches with the round trip (give_up_times) and the frame completes."""
    retry, stop, frame = hooks.give_up_times(0.6)
    assert (round(retry, 3), round(stop, 3), round(frame, 3)) == (0.73, 1.8, 1.3)
    assert hooks.give_up_times(None) == (hooks.NACK_RETRY, hooks.NACK_GIVE_UP, hooks.FRAME_GIVE_UP)
    assert hooks.give_up_times(0.001)[0] == hooks.NACK_RETRY_MIN  # not a NACK a millisecond
    buf, tap, got, losses = _buffer()
    tap.rtt = 0.6
    buf.add(_packet(50, 1000, True, False))
    buf.add(_packet(52, 1000, False, True))
    buf.add(_packet(53, 4000, True, True))
    buf.add(_packet(54, 7000, True, True))
    time.sleep(hooks.FRAME_GIVE_UP + 0.1)  # beyond the short bound
    buf.add(_packet(55, 10000, True, True))
    assert got == [] and tap.frames_given_up == 0
    buf.add(_packet(51, 1000, False, False))  # the retransmission, one long round trip later
    assert [f.pts for f in got] == [1000, 4000, 7000, 10000]
    assert tap.frames_given_up == 0 and losses == []
