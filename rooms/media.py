"""Producers, consumers and consumer sinks: the forwarding plane.

A Producer is one incoming track. Its receiver hook (aiortc_hooks.ReceiverTap)
calls `Producer._on_frame` synchronously on the event loop for every complete
encoded frame, and the producer fans the frame out to its consumers right there.
That hook *is* the producer's pump: it drains the track continuously whether or
not anyone consumes it, so nothing ever queues up behind a producer, and it costs
no task switch or queue hop per frame (the design notes ask for a pump task per
producer; a synchronous fan-out gives the same guarantee more cheaply).

A Consumer is one outgoing copy of a producer towards one sink: a subscriber's
RTCRtpSender (`SenderSlot`) or anything else implementing `ConsumerSink`, e.g. a
recorder. A video consumer starts at the live edge: it asks the producer for a
keyframe when it starts and drops everything until that keyframe arrives.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from typing import TYPE_CHECKING, Callable, Optional, Protocol

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .frames import EncodedFrame
from .stats import STATS

if TYPE_CHECKING:
    from .aiortc_hooks import ReceiverTap

logger = logging.getLogger(__name__)

# At most one keyframe request per producer per this many seconds; a request made
# inside the window is sent once at the end of it, so none is lost.
PLI_INTERVAL = 0.5
# One viewer's own keyframe requests (PLI/FIR relayed from its receiver) reach the publisher at
# most once per this many seconds: a viewer on a lossy link must not make the publisher send
# keyframes for everyone (every keyframe costs every viewer bandwidth).
VIEWER_PLI_INTERVAL = 2.0

# What a consumer of video forwards (rooms/adaptation.py decides per viewer).
FULL, REDUCED, PAUSED = "full", "reduced", "paused"


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
        if self.paused or not self.consumers:
            return
        for consumer in tuple(self.consumers.values()):
            try:
                consumer.deliver(frame)
            except Exception:  # one broken sink must not starve the others
                logger.exception("consumer %s failed; closing it", consumer.id)
                consumer.close()
        self.frames_out += 1

    def rebind(self, tap: "ReceiverTap", mid: Optional[str], track_id: Optional[str]) -> None:
        """The publisher's connection was renewed (aiortc has no ICE restart, so a restart is
        a new connection): the same track now comes through `tap`. Consumers stay attached and
        wait for the next keyframe, which is asked for as soon as the new source is heard."""
        if self.closed:
            raise RuntimeError(f"producer {self.id} is closed")
        self._tap.on_frame = self._tap.on_loss = None
        self._tap = tap
        self.mid, self.track_id = mid, track_id
        self._rebase = True
        tap.on_frame = self._on_frame
        tap.on_loss = self._on_loss
        if self.kind == "video":
            for consumer in self.consumers.values():
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

    def detach(self, consumer: "Consumer") -> None:
        self.consumers.pop(consumer.id, None)

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

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        if not paused and self.kind == "video":
            # Frames were dropped while paused: every consumer needs a keyframe.
            for consumer in self.consumers.values():
                consumer.waiting_keyframe = True
            self.request_keyframe()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._tap.on_frame = self._tap.on_loss = None
        if self._pli_timer is not None:
            self._pli_timer.cancel()
            self._pli_timer = None
        for consumer in tuple(self.consumers.values()):
            consumer.close()

    def info(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "codec": self.mime,
            "mid": self.mid,
            "track_id": self.track_id,
            "paused": self.paused,
        }

    def __repr__(self) -> str:
        return f"Producer({self.id}, {self.kind}, {self.mime}, from={self.participant_id})"


class Consumer:
    """One outgoing copy of a producer towards one sink."""

    def __init__(
        self,
        consumer_id: str,
        producer: Producer,
        sink: ConsumerSink,
        subscriber_id: str,
        on_closed: Optional[Callable[["Consumer"], None]] = None,
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

    def set_level(self, level: str) -> None:
        if level == self.level or self.producer.kind != "video":
            return
        was = self.level
        self.level = level
        if was == PAUSED:
            # Back from a pause: start again at a keyframe.
            self.waiting_keyframe = True
            self.request_keyframe()

    def activate(self) -> None:
        """Start receiving from the live edge (video: from the next keyframe)."""
        if self.active or self.closed:
            return
        self.active = True
        self.producer.attach(self)
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
        self.producer.request_keyframe()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.active = False
        self.producer.detach(self)
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

    async def recv(self) -> EncodedFrame:  # type: ignore[override]
        if not self.pulling:
            self.pulling = True
            callback, self._on_first_pull = self._on_first_pull, None
            if callback is not None:
                callback()
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
