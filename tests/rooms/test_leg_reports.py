"""A forwarding leg's own bookkeeping for what its viewer reports (rooms/aiortc_hooks.py,
docs/protocol.md "Link quality and adaptation"): numbers lost before the server are not the
viewer's loss, a NACK repeated within a round trip is not answered twice, and the round trip is
matched to whichever recent sender report a receiver report answers."""
from __future__ import annotations

import time
from types import SimpleNamespace

from hypothesis import given, strategies as st

from rooms.aiortc_hooks import MIN_RESEND_INTERVAL, PacketSender, ViewerFeedback


class LoopLeg(PacketSender):
    """A real PacketSender whose socket is a list (no DTLS or ICE behind it)."""

    __slots__ = ("wire",)

    def __init__(self) -> None:
        super().__init__(SimpleNamespace(_ssrc=1111, _rtx_ssrc=2222, transport=None), "video", 90000)
        self.wire: list[bytes] = []
        self.pt, self.rtx_pt, self.ready = 96, 97, True
        self._protect = bytes
        self._addr = ("127.0.0.1", 9)

    def _resolve(self):  # type: ignore[no-untyped-def]
        self._sendto = lambda data, addr: self.wire.append(data)
        return self._sendto


def _seq(data: bytes) -> int:
    return (data[2] << 8) | data[3]


def test_numbers_lost_before_the_server_are_holes_and_a_late_packet_fills_one():
    leg = LoopLeg()
    start = leg.next_seq
    for k in (0, 1, 2, 5, 6, 9):  # 3, 4, 7, 8 never reached the server
        leg.send((start + k) & 0xFFFF, 1000 + k, 0, b"p", b"", None, 0.0, True)
    assert leg.holes == 4
    leg.send((start + 3) & 0xFFFF, 1003, 0, b"p", b"", None, 0.0, False)  # 3 arrives late
    assert leg.holes == 3
    assert [_seq(d) for d in leg.wire] == [(start + k) & 0xFFFF for k in (0, 1, 2, 5, 6, 9, 3)]


def test_a_publishers_loss_does_not_read_as_the_viewers():
    """The viewer counts the numbers the server skipped as lost; with them taken out, a healthy
    viewer of a party on a lossy uplink reports no loss of its own (the lab saw 96 %)."""
    fb = ViewerFeedback()
    fb.report(0.0, 0, 0, 0)
    fb.report(1.0, 40, 100, 40)  # 40 of 100 numbers never sent: all the viewer missed
    assert fb.loss == 0.0
    fb.report(2.0, 50, 200, 45)  # 5 more holes, 5 lost on the link itself: 5 of 95
    assert abs(fb.loss - 5 / 95) < 1e-9
    fb.report(3.0, 150, 300, 145)  # nothing but holes in a window: says nothing about the link
    assert fb.loss_at == 2.0


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(1, 200)), min_size=1, max_size=30))
def test_loss_stays_a_fraction_whatever_the_counts(windows):
    fb, lost, holes, highest, t = ViewerFeedback(), 0, 0, 0, 0.0
    fb.report(t, lost, highest, holes)
    for own, upstream, sent in windows:
        t += 1.0
        highest += sent
        holes += upstream
        lost += own + upstream
        fb.report(t, lost, highest, holes)
        if fb.loss_at == t:
            assert 0.0 <= fb.loss <= 1.0


def test_a_nack_repeated_within_a_round_trip_is_answered_once():
    leg = LoopLeg()
    seq = leg.next_seq
    leg.send(seq, 1000, 1, b"frame", b"", None, 0.0, True)
    leg.wire.clear()
    leg.rtt = 0.3
    leg.retransmit(seq)
    leg.retransmit(seq)  # Chrome asks again before the first copy could have arrived
    assert len(leg.wire) == 1 and leg.retransmits == 1 and leg.retransmits_repeated == 1
    rtx = leg.wire[0]
    assert rtx[1] & 0x7F == 97 and int.from_bytes(rtx[8:12], "big") == 2222 and rtx[12:14] == seq.to_bytes(2, "big")
    leg._resent_at[seq % len(leg._resent_at)] -= 0.31  # a round trip later it is missing still
    leg.retransmit(seq)
    assert len(leg.wire) == 2 and leg.retransmits == 2


def test_a_new_packet_in_a_history_slot_can_be_resent_at_once():
    leg = LoopLeg()
    first = leg.next_seq
    leg.send(first, 0, 0, b"a", b"", None, 0.0, True)
    leg.retransmit(first)
    for k in range(1, len(leg._history) + 1):  # the buffer goes round: the slot holds a new packet
        leg.send((first + k) & 0xFFFF, k, 0, b"b", b"", None, 0.0, True)
    leg.wire.clear()
    leg.retransmit((first + len(leg._history)) & 0xFFFF)
    assert len(leg.wire) == 1
    assert MIN_RESEND_INTERVAL > 0


def test_the_round_trip_matches_any_recent_sender_report():
    """On a queued link the answer to a sender report comes after the next one was sent: aiortc
    matched only the latest, so the round trip of exactly such a link stayed unknown."""
    leg = LoopLeg()
    leg.send(leg.next_seq, 0, 0, b"p", b"", None, 0.0, True)
    t0 = time.time()
    reports = [leg.sender_report(t0 + 1.0 * k) for k in range(3)]
    lsr = [(r.sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF for r in reports]
    # The answer to the first report comes 2.5 s after it was sent, 0.5 s of it held by the viewer.
    leg.on_report(t0 + 2.5, lsr[0], int(0.5 * 65536))
    assert leg.rtt is not None and abs(leg.rtt - 2.0) < 0.01
    leg.on_report(t0 + 3.0, 12345, 100)  # answers nothing this leg sent: ignored
    assert abs(leg.rtt - 2.0) < 0.01
    for k in range(3, 40):  # only the recent ones are kept
        leg.sender_report(t0 + k)
    assert len(leg._sr_times) <= 16
