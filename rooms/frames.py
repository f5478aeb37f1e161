"""Encoded media as it travels through the server: never decoded, never re-encoded.

`EncodedFrame` is what producers fan out and what every consumer sink receives.
It is a plain slotted object rather than an `av.Packet` because the live path only
needs the bytes and the RTP timestamp; `to_av_packet()` builds the PyAV packet a
recorder muxes (pts = extended RTP timestamp, time_base = 1/clock rate).
"""

from __future__ import annotations

import fractions
from typing import Optional

import av

_TIME_BASES: dict[int, fractions.Fraction] = {}


def time_base_for(clock_rate: int) -> fractions.Fraction:
    tb = _TIME_BASES.get(clock_rate)
    if tb is None:
        tb = _TIME_BASES[clock_rate] = fractions.Fraction(1, clock_rate)
    return tb


class EncodedFrame:
    """One complete encoded frame (a VP8/H.264 picture or an Opus packet)."""

    __slots__ = ("data", "pts", "clock_rate", "codec", "keyframe", "arrival", "tid")

    def __init__(
        self,
        data: bytes,
        pts: int,
        clock_rate: int,
        codec: str,
        keyframe: bool,
        arrival: float,
        tid: Optional[int] = None,
    ) -> None:
        self.data = data
        # RTP timestamp extended to 64 bits (wraps unrolled), in 1/clock_rate units.
        self.pts = pts
        self.clock_rate = clock_rate
        # Lower-case mime type, e.g. "video/vp8", "audio/opus".
        self.codec = codec
        self.keyframe = keyframe
        # time.time() when the frame was completed on the server (wall clock, for
        # recorders that anchor tracks to real time).
        self.arrival = arrival
        # Temporal layer of a VP8 frame published with temporal scalability (L1T3: 0, 1, 2);
        # None when the stream has no layers. A viewer on a narrow link gets layer 0 only.
        self.tid = tid

    @property
    def time_base(self) -> fractions.Fraction:
        return time_base_for(self.clock_rate)

    def to_av_packet(self) -> av.Packet:
        packet = av.Packet(self.data)
        packet.pts = self.pts
        packet.dts = self.pts
        packet.time_base = self.time_base
        packet.is_keyframe = self.keyframe
        return packet

    def __repr__(self) -> str:
        return (
            f"EncodedFrame({self.codec}, pts={self.pts}, {len(self.data)} B"
            f"{', key' if self.keyframe else ''})"
        )


def is_vp8_keyframe(data: bytes) -> bool:
    # RFC 6386 9.1: P bit (bit 0 of the first byte) is 0 for key frames, and key
    # frames carry the start code 9d 01 2a at bytes 3..5. Checking the start code
    # too rejects a truncated frame whose first byte happens to look like a key.
    return len(data) >= 10 and not (data[0] & 0x01) and data[3:6] == b"\x9d\x01\x2a"


def is_h264_keyframe(data: bytes) -> bool:
    # Annex-B stream (aiortc's depayloader emits start codes): an IDR slice (5) or
    # an SPS (7) means a decoder can start here.
    i = data.find(b"\x00\x00\x01")
    while i != -1 and i + 3 < len(data):
        nal_type = data[i + 3] & 0x1F
        if nal_type in (5, 7):
            return True
        i = data.find(b"\x00\x00\x01", i + 3)
    return False


def is_keyframe(codec: str, data: bytes) -> bool:
    if codec == "video/vp8":
        return is_vp8_keyframe(data)
    if codec == "video/h264":
        return is_h264_keyframe(data)
    # Audio frames are all independently decodable.
    return not codec.startswith("video/")


def is_frame_start(codec: str, payload: bytes) -> Optional[bool]:
    """Whether an RTP payload (before depayloading) begins a new frame.

    Used to refuse a frame whose first packets were lost: forwarding it would
    hand a viewer's decoder garbage. Returns None when the codec cannot tell.
    """
    if not payload:
        return False
    if codec == "video/vp8":
        # VP8 payload descriptor: S bit set and partition index 0.
        return bool(payload[0] & 0x10) and (payload[0] & 0x0F) == 0
    if codec == "video/h264":
        nal_type = payload[0] & 0x1F
        if nal_type == 28:  # FU-A: start bit
            return len(payload) > 1 and bool(payload[1] & 0x80)
        return 1 <= nal_type <= 24
    return None


def vp8_temporal_id(payload: bytes) -> Optional[int]:
    """TID of the VP8 payload descriptor (RFC 7741 §4.2), or None when it carries none."""
    if len(payload) < 2 or not payload[0] & 0x80:  # X: no extension byte
        return None
    ext = payload[1]
    if not ext & 0x20 and not ext & 0x10:  # neither T nor K: no TID/KEYIDX byte
        return None
    i = 2
    if ext & 0x80:  # I: picture id, 7 or 15 bits
        if len(payload) <= i:
            return None
        i += 2 if payload[i] & 0x80 else 1
    if ext & 0x40:  # L: TL0PICIDX
        i += 1
    if not ext & 0x20 or len(payload) <= i:  # K only: KEYIDX without a TID
        return None
    return payload[i] >> 6


def vp8_descriptor_size(payload: bytes) -> int:
    """Length of the VP8 payload descriptor at the start of an RTP payload (RFC 7741 §4.2)."""
    size = 1
    if payload[0] & 0x80:  # X: extension byte
        ext = payload[1]
        size = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            size += 2 if len(payload) > 2 and payload[2] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            size += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX byte
            size += 1
    return size


def rtp_keyframe(codec: str, payload: bytes) -> bool:
    """Whether the RTP payload (before depayloading) starts a keyframe: a decoder can begin at
    the frame this packet opens. Meaningful on a frame's first packet (is_frame_start)."""
    if not payload:
        return False
    if codec == "video/vp8":
        if not payload[0] & 0x10 or payload[0] & 0x0F:  # not S with partition 0
            return False
        i = vp8_descriptor_size(payload)
        # RFC 6386 9.1: P bit 0 in a key frame, whose header carries the start code 9d 01 2a.
        return len(payload) >= i + 10 and not payload[i] & 0x01 and payload[i + 3:i + 6] == b"\x9d\x01\x2a"
    if codec == "video/h264":
        nal_type = payload[0] & 0x1F
        if nal_type in (5, 7):
            return True
        if nal_type == 24:  # STAP-A: 16-bit sizes, then NAL units
            i = 1
            while i + 2 < len(payload):
                size = (payload[i] << 8) | payload[i + 1]
                if payload[i + 2] & 0x1F in (5, 7):
                    return True
                i += 2 + size
            return False
        if nal_type == 28:  # FU-A start
            return len(payload) > 1 and bool(payload[1] & 0x80) and payload[1] & 0x1F in (5, 7)
        return False
    return not codec.startswith("video/")
