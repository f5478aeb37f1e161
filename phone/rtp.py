"""RTP (RFC 3550) for one call: the header, G.711 frames of 20 ms, RFC 4733 keypad events,
and a small jitter buffer of the caller's audio."""
from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

import numpy as np

FRAME = 160                  # samples of 20 ms at 8 kHz
EVENT_KEYS = "0123456789*#ABCD"
MAX_RTP = 1500


@dataclass
class Packet:
    pt: int
    marker: bool
    seq: int
    ts: int
    ssrc: int
    payload: bytes


def parse(data: bytes) -> Packet | None:
    """None for anything that is not a plain RTP v2 packet."""
    if len(data) < 12 or len(data) > MAX_RTP or data[0] >> 6 != 2:
        return None
    b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", data)
    offset = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:  # header extension
        if len(data) < offset + 4:
            return None
        offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
    end = len(data)
    if b0 & 0x20:  # padding
        end -= data[-1]
    if offset > end:
        return None
    return Packet(pt=b1 & 0x7F, marker=bool(b1 & 0x80), seq=seq, ts=ts, ssrc=ssrc, payload=data[offset:end])


def build(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def event_key(payload: bytes) -> tuple[str, bool] | None:
    """(key, end) of an RFC 4733 telephone-event payload; None if it is no keypad key."""
    if len(payload) < 4 or payload[0] >= len(EVENT_KEYS):
        return None
    return EVENT_KEYS[payload[0]], bool(payload[1] & 0x80)


def dtmf_relay_key(body: bytes) -> str | None:
    """The key of a SIP INFO `application/dtmf-relay` body (`Signal=5`)."""
    for line in body.decode("ascii", "replace").splitlines():
        name, _, value = line.partition("=")
        if name.strip().lower() == "signal":
            value = value.strip()
            if len(value) == 1 and value.upper() in EVENT_KEYS:
                return value.upper()
            if value == "10":
                return "*"
            if value == "11":
                return "#"
    return None


class JitterBuffer:
    """The caller's decoded audio in order of sequence number: waits for `depth` frames before
    playing, reorders within it, drops what comes too late and keeps at most `limit` frames
    (a burst after a stall is cut back, so delay does not grow)."""

    def __init__(self, depth: int = 2, limit: int = 10):
        self.depth, self.limit = depth, limit
        self.frames: dict[int, np.ndarray] = {}
        self.next_seq: int | None = None
        self.started = False
        self.late = 0
        self.lost = 0

    def put(self, seq: int, samples: np.ndarray) -> None:
        if self.next_seq is not None and ((seq - self.next_seq) & 0xFFFF) > 0x8000:
            self.late += 1
            return
        self.frames[seq] = samples
        if self.next_seq is None:
            self.next_seq = seq
        while len(self.frames) > self.limit:  # too far behind: skip ahead to the oldest kept
            oldest = min(self.frames, key=lambda s: (s - self.next_seq) & 0xFFFF)
            if oldest == self.next_seq:
                self.frames.pop(oldest)
                self.next_seq = (oldest + 1) & 0xFFFF
            else:
                self.next_seq = oldest

    def get(self) -> np.ndarray | None:
        """The next 20 ms, or None (silence) while filling or when nothing is there."""
        if self.next_seq is None:
            return None
        if not self.started:
            if len(self.frames) < self.depth:
                return None
            self.started = True
        frame = self.frames.pop(self.next_seq, None)
        if frame is None:
            if not self.frames:
                self.started = False   # ran dry: fill up again
                return None
            self.lost += 1
        self.next_seq = (self.next_seq + 1) & 0xFFFF
        return frame


class Mix:
    """What the caller hears from the room: one FIFO of 8 kHz samples per remote audio track, summed
    20 ms at a time. A FIFO longer than `limit` samples drops its oldest (latency stays bounded)."""

    def __init__(self, limit: int = 8 * FRAME):
        self.limit = limit
        self.sources: dict[object, deque] = {}

    def push(self, source: object, samples: np.ndarray) -> None:
        q = self.sources.setdefault(source, deque())
        q.append(samples.astype(np.int16))
        while sum(len(x) for x in q) > self.limit:
            q.popleft()

    def drop(self, source: object) -> None:
        self.sources.pop(source, None)

    def pull(self) -> np.ndarray | None:
        out = np.zeros(FRAME, dtype=np.int32)
        heard = False
        for q in list(self.sources.values()):
            need, at = FRAME, 0
            while need and q:
                head = q[0]
                take = head[:need]
                out[at:at + len(take)] += take
                at += len(take)
                need -= len(take)
                if len(take) == len(head):
                    q.popleft()
                else:
                    q[0] = head[len(take):]
                heard = True
        return np.clip(out, -32768, 32767).astype(np.int16) if heard else None
