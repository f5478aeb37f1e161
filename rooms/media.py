"""Producers, consumers and consumer sinks: the forwarding plane.

A Producer is one incoming track. Its receiver hook (aiortc_hooks.ReceiverTap) calls
`Producer._on_packet` synchronously on the event loop for every RTP packet (the packet path:
viewers' consumers renumber it onto their legs, docs/architecture.md "A media packet") and
`Producer._on_frame` for every complete encoded frame (recorders, and viewers on the frame
path, FORWARDING=frames); the producer fans both out to its consumers right there.
That hook *is* the producer's pump: it drains the track continuously whether or
not anyone consumes it, so nothing ever queues up behind a producer, and it costs
no task switch or queue hop per frame (the design notes ask for a pump task per
producer; a synchronous fan-out gives the same guarantee more cheaply).

A Consumer is one outgoing copy of a producer towards one sink: a subscriber's
RTCRtpSender (`SenderSlot`) or anything else implementing `ConsumerSink`, e.g. a
recorder. A video consumer starts at the live edge: it asks the producer for a
keyframe when it starts and drops everything until that keyframe arrives.

One module (~640 lines): producers and consumers are one concept on both paths, and the
packet path's renumbering belongs to the consumer whose decisions (level, keyframe wait) it
follows.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from typing import TYPE_CHECKING, Callable, Optional, Protocol

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .aiortc_hooks import abs_send_time as _abs_send_time
from .frames import EncodedFrame, is_frame_start, rtp_keyframe, vp8_temporal_id
from .stats import STATS

if TYPE_CHECKING:
    from aiortc.rtp import RtpPacket

    from .aiortc_hooks import PacketSender, ReceiverTap

logger = logging.getLogger(__name__)

# At most one keyframe request per producer per this many seconds; a request made
# inside the window is sent once at the end of it, so none is lost.
PLI_INTERVAL = 0.5
# One viewer's own keyframe requests (PLI/FIR relayed from its receiver) reach the publisher at
# most once per this many seconds: a viewer on a lossy link must not make the publisher send
# keyframes for everyone (every keyframe costs every viewer bandwidth).
VIEWER_PLI_INTERVAL = 2.0

# What a consumer of video forwards (rooms/adaptation.py decides per viewer): SMALL is the
# publisher's second, small encoding of the same camera (docs/protocol.md, "Link quality and
# adaptation"), forwarded on the viewer's leg in place of the camera's own stream.
FULL, REDUCED, SMALL, PAUSED = "full", "reduced", "small", "paused"

# How to forward to viewers (docs/architecture.md, "A media packet"): PACKETS rewrites and sends
# each RTP packet as it arrives; FRAMES assembles frames and packetizes them again per viewer
# through aiortc's sender (the earlier path, kept as the benchmark's baseline: FORWARDING=frames).
PACKETS, FRAMES = "packets", "frames"

# The packet path remembers, per consumer, what became of the latest RING incoming sequence
# numbers, so a packet arriving late (the publisher's retransmission of a loss) goes out under
# the number its place was given, or not at all. A power of two.
RING = 512
_UNSEEN, _DROPPED, _SENT = -1, -2, 0x10000  # a ring entry 0..0xFFFF: a gap, with the offset it keeps
_EMPTY_RING = [_UNSEEN] * RING
_RECENT_FRAMES = 8  # frames whose decision a late packet is judged by


class ConsumerSink(Protocol):
    """Where a consumer delivers encoded frames. Called on the event loop for every
    frame, so it must not block (a recorder hands frames to its own writer)."""

    def push(self, frame: EncodedFrame) -> bool:
        """Take one frame. Return False if it had to drop frames (overflow): the
        consumer then waits for, and asks for, a fresh keyframe."""
        ...

    def close(self) -> None:
        """The consumer is gone; no more frames will come."""
        ...


class Producer:
    """One incoming track of one participant."""

    def __init__(
        self,
        producer_id: str,
        participant_id: str,
        kind: str,
        mime: str,
        codec: object,
        tap: "ReceiverTap",
        mid: Optional[str] = None,
        track_id: Optional[str] = None,
        role: str = "camera",
    ) -> None:
        self.id = producer_id
        self.participant_id = participant_id
        self.kind = kind
        self.mime = mime.lower()
        # aiortc RTCRtpCodecParameters negotiated with the publisher; consumers are
        # forced to the very same codec.
        self.codec = codec
        self.mid = mid
        self.track_id = track_id
        self.paused = False
        self.closed = False
        # "small": the second, small encoding of a participant's camera. It is no producer of its
        # own to viewers or recorders: it hangs off the camera's producer (`small`), and a viewer
        # on a narrow link gets its packets on the camera's leg (Consumer.set_level(SMALL)).
        # "screen": a shared screen or window, forwarded and recorded as a video of its own
        # (docs/protocol.md, "Screen sharing"); "camera" for the camera and the microphone.
        self.role = role
        self.small: Optional[Producer] = None
        self.consumers: dict[str, Consumer] = {}
        self.frames_in = 0
        self.bytes_in = 0
        self.frames_out = 0
        self.keyframes_in = 0
        self.keyframe_requests = 0
        self.plis_sent = 0
        self._tap = tap
        self._loop = asyncio.get_running_loop()
        self._last_pli = -math.inf
        self._pli_timer: Optional[asyncio.TimerHandle] = None
        # Renewed connections (Producer.rebind): the new source's timestamps are shifted onto
        # this producer's timeline, so viewers and recorders see one continuous track.
        self._pts_offset = 0
        self._rebase = False
        self._last_pts: Optional[int] = None
        self._last_arrival = 0.0
        # Layer 0 of a VP8 stream with temporal layers (its frames' tid is 0): what a viewer on
        # a narrow link gets (rooms/adaptation.py). layered: any frame had a tid.
        self.bytes_base = 0
        self.layered = False
        # Consumers by how they take media: per packet (viewers on the packet path) or per
        # frame (recorders, viewers on the frame path). The receiver's packet hook is set only
        # while someone takes packets.
        self._packet_consumers: tuple[Consumer, ...] = ()
        self._frame_consumers: tuple[Consumer, ...] = ()
        # Bumped when the publisher's source changes (rebind): its RTP sequence numbers and
        # timestamps start anew, so every packet consumer starts a new mapping onto its leg.
        self.epoch = 0
        self.packets_in = 0
        self._vp8 = self.mime == "video/vp8"
        tap.on_frame = self._on_frame
        tap.on_loss = self._on_loss

    @property
    def primary_ssrc(self) -> Optional[int]:
        return self._tap.primary_ssrc

    @property
    def receiver(self):  # the aiortc RTCRtpReceiver the track arrives on now
        return self._tap.receiver

    @property
    def last_packet(self) -> Optional[float]:
        """time.monotonic() of the latest packet from the publisher (None: nothing yet)."""
        return self._tap.last_packet

    def take_level(self) -> Optional[int]:
        """The loudest audio level (-dBov) heard since the last call (rooms/speaker.py), or None."""
        level, self._tap.loudest = getattr(self._tap, "loudest", None), None
        return level

    def _on_frame(self, frame: EncodedFrame) -> None:
        if self._rebase:
            self._rebase_onto(frame)
        if self._pts_offset:
            frame.pts += self._pts_offset
        self._last_pts, self._last_arrival = frame.pts, frame.arrival
        self.frames_in += 1
        self.bytes_in += len(frame.data)
        if frame.tid is not None:
            self.layered = True
            if frame.tid == 0:
                self.bytes_base += len(frame.data)
        if frame.keyframe:
            self.keyframes_in += 1
        if self.paused or not self._frame_consumers:
            return
        for consumer in self._frame_consumers:
            try:
                consumer.deliver(frame)
            except Exception:  # one broken sink must not starve the others
                logger.exception("consumer %s failed; closing it", consumer.id)
                consumer.close()
        self.frames_out += 1

    def _on_packet(self, packet: "RtpPacket") -> None:
        """The packet path: one RTP packet of the publisher (decrypted, RTX unwrapped), to every
        packet consumer at once, synchronously: what can be told of it is worked out here once
        (frame start, keyframe, temporal layer, audio level), each consumer only renumbers it."""
        self.packets_in += 1
        if self.paused:
            return
        payload = packet.payload
        now = time.time()
        abs3 = _abs_send_time(now)
        tid = level = None
        start = key = False
        if self.kind == "video":
            if payload:
                if self._vp8:
                    start = payload[0] & 0x1F == 0x10  # S bit, partition 0
                    tid = vp8_temporal_id(payload)
                    key = start and rtp_keyframe("video/vp8", payload)
                else:
                    key = rtp_keyframe(self.mime, payload)
                    start = key or bool(is_frame_start(self.mime, payload))
        else:
            audio_level = packet.extensions.audio_level
            if audio_level is not None:
                level = (0x80 if audio_level[0] else 0) | (audio_level[1] & 0x7F)
        seq, ts, marker = packet.sequence_number, packet.timestamp, packet.marker
        for consumer in self._packet_consumers:
            try:
                consumer.on_packet(seq, ts, marker, payload, tid, start, key, abs3, level, now)
            except Exception:  # one broken leg must not starve the others
                logger.exception("consumer %s failed; closing it", consumer.id)
                consumer.close()

    def _sort_consumers(self) -> None:
        consumers = tuple(self.consumers.values())
        self._packet_consumers = tuple(c for c in consumers if c.packets is not None)
        self._frame_consumers = tuple(c for c in consumers if c.packets is None)
        self._tap.on_packet = self._on_packet if self._packet_consumers and not self.closed else None

    def rebind(self, tap: "ReceiverTap", mid: Optional[str], track_id: Optional[str]) -> None:
        """The publisher's connection was renewed (aiortc has no ICE restart, so a restart is
        a new connection): the same track now comes through `tap`. Consumers stay attached and
        wait for the next keyframe, which is asked for as soon as the new source is heard."""
        if self.closed:
            raise RuntimeError(f"producer {self.id} is closed")
        self._tap.on_frame = self._tap.on_loss = self._tap.on_packet = None
        self._tap = tap
        self.mid, self.track_id = mid, track_id
        self._rebase = True
        self.epoch += 1
        tap.on_frame = self._on_frame
        tap.on_loss = self._on_loss
        self._sort_consumers()
        for consumer in self.consumers.values():
            consumer.resync = True  # the new source numbers anew: each leg maps it on from its last packet
            if self.kind == "video":
                consumer.waiting_keyframe = True

    def _rebase_onto(self, frame: EncodedFrame) -> None:
        self._rebase = False
        if self._last_pts is None:
            self._pts_offset = 0
        else:
            gap = max(frame.arrival - self._last_arrival, 0.001)
            self._pts_offset = self._last_pts + int(gap * frame.clock_rate) - frame.pts
        if self.kind == "video" and self.consumers:
            self._last_pli = -math.inf  # the new source: ask at once, whatever was asked before
            self.request_keyframe()

    def _on_loss(self) -> None:
        # The publisher's stream lost a frame for good: what follows references it. Viewers
        # wait for the keyframe the receiver asks for (a short freeze, not a smeared picture).
        for consumer in self.consumers.values():
            consumer.waiting_keyframe = True

    def attach(self, consumer: "Consumer") -> None:
        if self.closed:
            raise RuntimeError(f"producer {self.id} is closed")
        self.consumers[consumer.id] = consumer
        self._sort_consumers()

    def detach(self, consumer: "Consumer") -> None:
        if self.consumers.pop(consumer.id, None) is not None:
            self._sort_consumers()

    def set_small(self, small: Optional["Producer"]) -> None:
        """The small encoding of this camera (None: there is none now; the old one closes and
        the viewers it served go back to this stream)."""
        old = self.small
        if old is small:
            return
        self.small = small
        if small is not None:
            small.paused = self.paused
        if old is not None:
            old.close()

    def set_uplink_rtt(self, rtt: Optional[float]) -> None:
        """The round trip to the publisher, which paces the NACKs of its losses (and its small
        encoding's, on the same connection)."""
        self._tap.rtt = rtt
        if self.small is not None:
            self.small._tap.rtt = rtt

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe on its primary SSRC, rate-limited."""
        if self.kind != "video" or self.closed:
            return
        self.keyframe_requests += 1
        now = self._loop.time()
        wait = self._last_pli + PLI_INTERVAL - now
        if wait <= 0:
            self._send_pli(now)
        elif self._pli_timer is None:
            self._pli_timer = self._loop.call_later(wait, self._send_trailing_pli)

    def _send_trailing_pli(self) -> None:
        self._pli_timer = None
        if not self.closed:
            self._send_pli(self._loop.time())

    def _send_pli(self, now: float) -> None:
        if self._tap.send_pli():
            self._last_pli = now
            self.plis_sent += 1
            logger.debug("%r: keyframe asked (%d times in all, %d requests)", self, self.plis_sent,
                         self.keyframe_requests)

    def set_paused(self, paused: bool) -> None:
        if self.small is not None:
            self.small.set_paused(paused)
        if paused == self.paused:
            return
        self.paused = paused
        if not paused:
            for consumer in self.consumers.values():
                consumer.resync = True  # packets went by unseen: the packet path numbers on from its leg
        if not paused and self.kind == "video":
            # Frames were dropped while paused: every consumer needs a keyframe.
            for consumer in self.consumers.values():
                consumer.waiting_keyframe = True
            self.request_keyframe()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._tap.on_frame = self._tap.on_loss = self._tap.on_packet = None
        if self._pli_timer is not None:
            self._pli_timer.cancel()
            self._pli_timer = None
        if self.small is not None:
            self.small.close()
            self.small = None
        for consumer in tuple(self.consumers.values()):
            if consumer.producer is not self:  # a viewer of the camera served from this small copy
                consumer.use_source(consumer.producer)
            else:
                consumer.close()

    def info(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "codec": self.mime,
            "mid": self.mid,
            "track_id": self.track_id,
            "paused": self.paused,
            "role": self.role,
        }

    def __repr__(self) -> str:
        return f"Producer({self.id}, {self.kind}, {self.mime}, from={self.participant_id})"


class Consumer:
    """One outgoing copy of a producer towards one sink: frames to a ConsumerSink (a recorder,
    a frame-path viewer), or, with `packets` (a viewer's leg on the packet path), each RTP
    packet renumbered onto the leg's own sequence numbers and timeline.

    The packet path keeps the leg continuous for the viewer: its sequence numbers have no gap
    for what the server chose not to send (temporal layers above 0 while `reduced`, frames
    before the keyframe a consumer waits for), and a new mapping (a new consumer on a reused
    m-line after a caucus move, the publisher's renewed connection, a resumed pause or mute)
    goes on from the leg's last sequence number, with timestamps advanced by the time passed."""

    __slots__ = (
        "id", "producer", "sink", "subscriber_id", "active", "closed", "waiting_keyframe", "frames",
        "bytes", "skipped", "overflows", "keyframe_requests", "egress", "_on_closed", "level", "held",
        "_viewer_pli_at", "packets", "resync", "late", "_video", "source", "_epoch", "_seq_off", "_ts_off",
        "_max_in", "_base", "_ring", "_cur_ts", "_cur_fwd", "_recent",
    )

    def __init__(
        self,
        consumer_id: str,
        producer: Producer,
        sink: ConsumerSink,
        subscriber_id: str,
        on_closed: Optional[Callable[["Consumer"], None]] = None,
        packets: Optional["PacketSender"] = None,
    ) -> None:
        self.id = consumer_id
        self.producer = producer
        self.sink = sink
        self.subscriber_id = subscriber_id
        self.active = False
        self.closed = False
        self.waiting_keyframe = producer.kind == "video"
        self.frames = 0
        self.bytes = 0
        self.skipped = 0  # frames dropped while waiting for a keyframe
        self.overflows = 0
        self.keyframe_requests = 0
        # To a viewer (a subscribe connection's sender), not a recorder or other sink.
        self.egress = isinstance(sink, SenderSlot)
        self._on_closed = on_closed
        # FULL: every frame; REDUCED: temporal layer 0 only; PAUSED: nothing (audio never is).
        self.level = FULL
        self.held = 0  # frames not forwarded because of the level
        self._viewer_pli_at = -math.inf
        # The packet path: the leg (PacketSender) and how incoming numbers map onto it.
        self.packets = packets
        self.resync = True      # map anew at the next packet that may go (audio: any; video: a keyframe)
        self.late = 0           # late packets sent into the gap kept for them
        self._video = producer.kind == "video"
        # What it takes packets from now: the producer, or the producer's small encoding (SMALL).
        self.source = producer
        self._epoch: tuple = ()  # the source (and its epoch) the timestamp offset belongs to
        self._seq_off = 0       # outgoing = incoming + offset (mod 2^16)
        self._ts_off = 0        # the same for timestamps (mod 2^32)
        self._max_in = 0        # newest incoming sequence number seen since the mapping
        self._base = 0          # the incoming sequence number the mapping began at
        self._ring: list[int] = []
        self._cur_ts: Optional[int] = None  # incoming timestamp of the newest frame, and whether it goes
        self._cur_fwd = False
        self._recent: list[tuple[int, bool]] = []

    def set_level(self, level: str) -> None:
        if level == self.level or self.producer.kind != "video":
            return
        was = self.level
        self.level = level
        small = self.producer.small
        if level is not PAUSED:
            source = small if level is SMALL and small is not None and not small.closed else self.producer
            if source is not self.source:
                self.use_source(source)
                return
        if was == PAUSED:
            # Back from a pause: start again at a keyframe.
            self.waiting_keyframe = True
            self.request_keyframe()

    def use_source(self, source: Producer) -> None:
        """Take packets from `source` (the producer or its small encoding) from its next
        keyframe on; the leg's numbering and timeline go on without a gap (Consumer._map)."""
        old, self.source = self.source, source
        if self.active and not self.closed:
            old.detach(self)
            source.attach(self)
        self.resync = True
        if self._video:
            self.waiting_keyframe = True
            self.request_keyframe()

    def activate(self) -> None:
        """Start receiving from the live edge (video: from the next keyframe)."""
        if self.active or self.closed:
            return
        self.active = True
        self.source.attach(self)
        self.request_keyframe()

    def deliver(self, frame: EncodedFrame) -> None:
        if self.level is not FULL:
            if self.level is PAUSED or (frame.tid is not None and frame.tid > 0):
                self.held += 1
                return
        if self.waiting_keyframe:
            if not frame.keyframe:
                self.skipped += 1
                return
            self.waiting_keyframe = False
        if self.sink.push(frame):
            size = len(frame.data)
            self.frames += 1
            self.bytes += size
            if self.egress:
                STATS.forwarded_frames += 1
                STATS.forwarded_bytes += size
        else:
            self.overflows += 1
            if self.producer.kind == "video":
                self.waiting_keyframe = True
                self.request_keyframe()

    # -- the packet path --------------------------------------------------------

    def on_packet(self, seq: int, ts: int, marker: int, payload: bytes, tid: Optional[int], start: bool,
                  key: bool, abs3: bytes, level: Optional[int], now: float) -> None:
        """One incoming RTP packet (see Producer._on_packet): send it on the leg renumbered, or
        account for not sending it so that the leg's numbering stays without a gap."""
        out = self.packets
        if not self._video:
            self._audio_packet(out, seq, ts, marker, payload, abs3, level, now)  # type: ignore[arg-type]
            return
        if self.level is PAUSED:
            # Nothing of it is seen: back from the pause the consumer maps anew at a keyframe.
            if marker:
                self.held += 1
            return
        if self.waiting_keyframe or self.resync:
            if not key:
                if marker:
                    self.skipped += 1
                return
            self.waiting_keyframe = False
            self._map(out, seq, ts, now)  # type: ignore[arg-type]
        ring = self._ring
        ahead = (seq - self._max_in) & 0xFFFF
        if ahead and ahead < 0x8000:  # the newest so far
            if ts != self._cur_ts:  # a new frame: decide for all of it
                fwd = not (tid and self.level is REDUCED)
                self._cur_ts, self._cur_fwd = ts, fwd
                recent = self._recent
                recent.append((ts, fwd))
                if len(recent) > _RECENT_FRAMES:
                    del recent[0]
            else:
                fwd = self._cur_fwd
            if ahead > 1:  # lost on the way in: the gap keeps its numbers for a late arrival
                off, i = self._seq_off, self._max_in
                for _ in range(min(ahead - 1, RING)):
                    i = (i + 1) & 0xFFFF
                    ring[i % RING] = off
            self._max_in = seq
            if fwd and payload:
                ring[seq % RING] = _SENT
                out.send((seq + self._seq_off) & 0xFFFF, (ts + self._ts_off) & 0xFFFFFFFF,  # type: ignore[union-attr]
                         marker, payload, abs3, None, now, True)
                self._count(marker, payload)
            else:
                # Not sent (a layer above the viewer's, padding): the numbers close up behind it.
                ring[seq % RING] = _DROPPED
                self._seq_off = (self._seq_off - 1) & 0xFFFF
                if marker and payload:
                    self.held += 1
        elif ahead and (self._max_in - seq) & 0xFFFF < RING:  # late: fill the gap kept for it
            entry = ring[seq % RING]
            if entry < 0 or entry >= _SENT:
                return  # before the mapping, already sent, or closed up
            if ts == self._cur_ts:
                fwd = self._cur_fwd
            else:
                fwd = next((f for t, f in self._recent if t == ts), None)
                if fwd is None:
                    # A frame none of whose packets came before (a one-packet delta frame lost on
                    # the way in, retransmitted): decided now, by its own layer. Dropping it left
                    # every viewer without a frame the next ones refer to, until a keyframe.
                    fwd = not (tid and self.level is REDUCED)
                    self._recent.append((ts, fwd))
                    if len(self._recent) > _RECENT_FRAMES:
                        del self._recent[0]
            if not fwd or not payload:
                ring[seq % RING] = _DROPPED
                return
            ring[seq % RING] = _SENT
            self.late += 1
            out.send((seq + entry) & 0xFFFF, (ts + self._ts_off) & 0xFFFFFFFF,  # type: ignore[union-attr]
                     marker, payload, abs3, None, now, False)
            self._count(marker, payload)

    def _audio_packet(self, out: "PacketSender", seq: int, ts: int, marker: int, payload: bytes,
                      abs3: bytes, level: Optional[int], now: float) -> None:
        if self.resync:
            self._map(out, seq, ts, now)
        ahead = (seq - self._max_in) & 0xFFFF
        if not ahead or not payload:
            return
        fresh = ahead < 0x8000
        if fresh:
            self._max_in = seq
        elif (self._max_in - seq) & 0xFFFF >= RING or (seq - self._base) & 0xFFFF >= 0x8000:
            return  # too old, or from before the mapping (its numbers belong to the one before)
        out.send((seq + self._seq_off) & 0xFFFF, (ts + self._ts_off) & 0xFFFFFFFF, marker, payload, abs3,
                 level, now, fresh)
        self._count(1, payload)

    def _map(self, out: "PacketSender", seq: int, ts: int, now: float) -> None:
        """A new mapping onto the leg, at the packet `seq`: it takes the leg's next sequence
        number; its timestamp goes on from the leg's last by the time passed, unless the same
        source continues (after a keyframe wait or a pause its own timeline is the right one)."""
        self.resync = False
        self._seq_off = (out.next_seq - seq) & 0xFFFF
        source = self.source
        if self._epoch != (source, source.epoch):
            self._epoch = (source, source.epoch)
            self._ts_off = (out.next_timestamp(now) - ts) & 0xFFFFFFFF
        self._max_in = (seq - 1) & 0xFFFF
        self._base = seq
        if self._video:
            self._ring = list(_EMPTY_RING)
            self._cur_ts = None
            self._recent.clear()

    def _count(self, marker: int, payload: bytes) -> None:
        size = len(payload)
        self.bytes += size
        STATS.forwarded_packets += 1
        STATS.forwarded_bytes += size
        if marker:
            self.frames += 1
            STATS.forwarded_frames += 1

    def viewer_keyframe_request(self) -> None:
        """The viewer's own PLI/FIR, rate limited per viewer (VIEWER_PLI_INTERVAL)."""
        now = time.monotonic()
        if self.closed or self.level is PAUSED or now - self._viewer_pli_at < VIEWER_PLI_INTERVAL:
            return
        self._viewer_pli_at = now
        self.request_keyframe()

    def request_keyframe(self) -> None:
        """On start, on overflow, and on the viewer's PLI/FIR (relayed)."""
        if self.closed:
            return
        self.keyframe_requests += 1
        self.source.request_keyframe()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.active = False
        self.source.detach(self)
        try:
            self.sink.close()
        except Exception:
            logger.exception("sink of consumer %s failed to close", self.id)
        if self._on_closed is not None:
            self._on_closed(self)

    def __repr__(self) -> str:
        return f"Consumer({self.id}, {self.producer.id} -> {self.subscriber_id}, frames={self.frames})"


class SenderSlot(MediaStreamTrack):
    """The track of one RTCRtpSender on a subscribe connection: a ConsumerSink the
    sender pulls EncodedFrames from. A slot outlives its consumers: when a consumer
    goes, its m-line turns inactive and a later consumer of the same kind and codec
    reuses it, so the subscribe SDP does not grow with every caucus move."""

    def __init__(self, kind: str, max_frames: int) -> None:
        super().__init__()
        self.kind = kind
        self.track_label = self._id
        self.consumer: Optional[Consumer] = None
        self.pulling = False  # the sender's RTP loop has started reading
        self._max_frames = max_frames
        self._buf: collections.deque[EncodedFrame] = collections.deque()
        self._waiter: Optional[asyncio.Future] = None
        self._on_first_pull: Optional[Callable[[], None]] = None

    @property
    def id(self) -> str:  # msid track id seen by the viewer
        return self.track_label

    def when_pulling(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the sender reads from this slot (now if it already does)."""
        if self.pulling:
            callback()
        else:
            self._on_first_pull = callback

    # ConsumerSink
    def push(self, frame: EncodedFrame) -> bool:
        buf = self._buf
        if len(buf) >= self._max_frames:
            # The sender is stuck (congested transport): drop the backlog rather
            # than deliver stale media late.
            buf.clear()
            return False
        buf.append(frame)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def close(self) -> None:
        # The consumer left; the slot (and its sender) stays for reuse.
        self._buf.clear()
        self._on_first_pull = None

    def start_pulling(self) -> None:
        """The sender reads from this slot now (the frame path), or its leg can send (the
        packet path, where nothing is read from the slot: it only names the viewer's track)."""
        if not self.pulling:
            self.pulling = True
            callback, self._on_first_pull = self._on_first_pull, None
            if callback is not None:
                callback()

    async def recv(self) -> EncodedFrame:  # type: ignore[override]
        if not self.pulling:
            self.start_pulling()
        buf = self._buf
        while not buf:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return buf.popleft()

    def stop(self) -> None:
        super().stop()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
