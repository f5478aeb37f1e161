"""Real aiortc client peers for the rooms/ tests (no mocks).

Publishers send pre-encoded media (VP8 160x120 and Opus, encoded once per test
session with PyAV), so a test spends no CPU on client-side encoding and knows the
exact bytes every frame must arrive with. Subscribers decode for real (aiortc's own
decoder threads, on the client side) and record the encoded bytes they reassembled.
"""

from __future__ import annotations

import array
import asyncio
import collections
import fractions
import math
import queue
import time
from typing import Callable, Optional

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket

from rooms import Room

WIDTH, HEIGHT = 160, 120


def client_configuration() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def encode_vp8(count: int = 30) -> list[bytes]:
    """One keyframe followed by inter frames of a moving gradient."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = WIDTH, HEIGHT
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, 30)
    codec.bit_rate = 300_000
    codec.gop_size = 100_000
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    out: list[bytes] = []
    chroma = bytes([128]) * (WIDTH * HEIGHT // 4)
    for i in range(count):
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        row = bytes(((x * 2 + i * 6) & 0xFF) for x in range(WIDTH))
        frame.planes[0].update(row * HEIGHT)
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
        frame.pts = i
        out += [bytes(p) for p in codec.encode(frame)]
    out += [bytes(p) for p in codec.encode(None)]
    return out


def encode_h264(count: int = 30) -> list[bytes]:
    """Constrained-baseline Annex-B H.264 (what browsers offer as 42e01f)."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height = WIDTH, HEIGHT
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, 30)
    codec.bit_rate = 300_000
    codec.gop_size = 100_000
    codec.options = {"profile": "baseline", "level": "31", "tune": "zerolatency", "preset": "ultrafast"}
    out: list[bytes] = []
    chroma = bytes([128]) * (WIDTH * HEIGHT // 4)
    for i in range(count):
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        frame.planes[0].update(bytes(((x * 2 + i * 6) & 0xFF) for x in range(WIDTH)) * HEIGHT)
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
        frame.pts = i
        out += [bytes(p) for p in codec.encode(frame)]
    out += [bytes(p) for p in codec.encode(None)]
    return out


def encode_opus(count: int = 50) -> list[bytes]:
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = 48000
    codec.layout = "stereo"
    codec.format = "s16"
    codec.bit_rate = 32000
    codec.time_base = fractions.Fraction(1, 48000)
    out: list[bytes] = []
    for i in range(count):
        samples = array.array(
            "h",
            (int(8000 * math.sin(2 * math.pi * 440 * (i * 960 + n // 2) / 48000)) for n in range(960 * 2)),
        )
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = 48000
        frame.pts = i * 960
        frame.time_base = fractions.Fraction(1, 48000)
        out += [bytes(p) for p in codec.encode(frame)]
    return [p for p in out if p]


class EncodedTrack(MediaStreamTrack):
    """Replays pre-encoded packets in real time. Video loops over its inter frames
    and goes back to the keyframe only when one is requested (PLI/FIR), like a real
    encoder with a very long GOP, so keyframe relay is really exercised."""

    def __init__(self, kind: str, packets: list[bytes]) -> None:
        super().__init__()
        self.kind = kind
        self.packets = packets
        self.clock_rate = 90000 if kind == "video" else 48000
        self.ticks = 3000 if kind == "video" else 960
        self.interval = 1 / 30 if kind == "video" else 0.02
        self.time_base = fractions.Fraction(1, self.clock_rate)
        self.sent = 0
        self.keyframes_sent = 0
        self._keyframe_wanted = True
        self._inter = 0
        self._start: Optional[float] = None

    def request_keyframe(self) -> None:
        self._keyframe_wanted = True

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self.sent * self.interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        if self.kind == "video":
            if self._keyframe_wanted:
                self._keyframe_wanted = False
                data = self.packets[0]
                self.keyframes_sent += 1
            else:
                data = self.packets[1 + self._inter % (len(self.packets) - 1)]
                self._inter += 1
        else:
            data = self.packets[self.sent % len(self.packets)]
        packet = av.Packet(data)
        packet.pts = self.sent * self.ticks
        packet.time_base = self.time_base
        self.sent += 1
        return packet


class _RecordingQueue(queue.Queue):
    """Stands in for a client receiver's decoder queue to record the encoded bytes
    it reassembled (the bytes that reached the viewer) before they are decoded."""

    def __init__(self, on_frame: Callable[[bytes], None]) -> None:
        super().__init__()
        self._on_frame = on_frame

    def put(self, item, block=True, timeout=None):  # type: ignore[no-untyped-def]
        if item is not None:
            self._on_frame(item[1].data)
        super().put(item, block, timeout)


class Client:
    """A participant's client: a publish connection (it offers) and a subscribe
    connection (it answers the room's offers), both MAX_BUNDLE, no ICE servers."""

    def __init__(self, room: Room, participant_id: str, media: "Media") -> None:
        self.room = room
        self.id = participant_id
        self.media = media
        self.pub = RTCPeerConnection(client_configuration())
        self.sub = RTCPeerConnection(client_configuration())
        self.video_track: Optional[EncodedTrack] = None
        self.audio_track: Optional[EncodedTrack] = None
        self.video_sender = None
        self.plis: list[tuple[float, int, int]] = []  # (time, fmt, media_ssrc) at the publisher
        self.tracks: dict[str, dict] = {}  # mid -> row of the latest offer's track table
        self.offers = 0
        self.decoded = {"audio": collections.Counter(), "video": collections.Counter()}
        self.decoded_by_mid: collections.Counter = collections.Counter()
        self.video_sizes: set[tuple[int, int]] = set()
        self.payloads: list[tuple[Optional[str], bytes]] = []  # (publisher, encoded video frame)
        self.errors: list[BaseException] = []
        self._readers: list[asyncio.Task] = []
        self._answering: Optional[asyncio.Task] = None
        self.sub.on("track", self._on_track)

    # -- publishing -------------------------------------------------------------

    async def publish(self, video: bool = True, audio: bool = True, h264: bool = False) -> None:
        if video:
            self.video_track = EncodedTrack("video", self.media.h264 if h264 else self.media.vp8)
            transceiver = self.pub.addTransceiver(self.video_track, direction="sendonly")
            if h264:
                caps = RTCRtpSender.getCapabilities("video").codecs
                transceiver.setCodecPreferences(
                    [c for c in caps if c.mimeType == "video/H264" and c.parameters.get("profile-level-id") == "42e01f"]
                    + [c for c in caps if c.mimeType == "video/rtx"]
                )
            self.video_sender = transceiver.sender
            self._watch_rtcp(transceiver.sender, self.video_track)
        if audio:
            self.audio_track = EncodedTrack("audio", self.media.opus)
            self.pub.addTransceiver(self.audio_track, direction="sendonly")
        await self.renegotiate_publish()

    async def renegotiate_publish(self) -> None:
        await self.pub.setLocalDescription(await self.pub.createOffer())
        answer = await self.room.handle_publish_offer(self.id, self.pub.localDescription.sdp, "offer")
        await self.pub.setRemoteDescription(RTCSessionDescription(**answer))

    def _watch_rtcp(self, sender, track: EncodedTrack) -> None:
        # Record every PLI/FIR the publisher receives, and honour it (a real encoder would).
        original = sender._handle_rtcp_packet

        async def handle(packet):  # type: ignore[no-untyped-def]
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                self.plis.append((time.monotonic(), packet.fmt, packet.media_ssrc))
                track.request_keyframe()
            await original(packet)

        sender._handle_rtcp_packet = handle

    # -- subscribing ------------------------------------------------------------

    def on_offer(self, message: dict) -> None:
        """Called by the room's on_subscribe_offer (what signaling would emit)."""
        self.offers += 1
        self._answering = asyncio.ensure_future(self._answer(message))

    async def _answer(self, message: dict) -> None:
        try:
            await self.sub.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type=message["type"]))
            for row in message["tracks"]:
                self.tracks[row["mid"]] = row
            await self.sub.setLocalDescription(await self.sub.createAnswer())
            await self.room.handle_subscribe_answer(self.id, self.sub.localDescription.sdp, "answer")
        except BaseException as exc:  # surfaced by the tests
            self.errors.append(exc)
            raise

    def _on_track(self, track) -> None:  # type: ignore[no-untyped-def]
        transceiver = next(t for t in self.sub.getTransceivers() if t.receiver.track is track)
        mid = transceiver.mid
        if track.kind == "video":
            transceiver.receiver._RTCRtpReceiver__decoder_queue = _RecordingQueue(
                lambda data, mid=mid: self.payloads.append((self.publisher_of(mid), data))
            )
        self._readers.append(asyncio.ensure_future(self._read(track, mid)))

    def publisher_of(self, mid: str) -> Optional[str]:
        row = self.tracks.get(mid)
        return row["participant_id"] if row else None

    async def _read(self, track, mid: str) -> None:  # type: ignore[no-untyped-def]
        try:
            while True:
                frame = await track.recv()
                self.decoded[track.kind][self.publisher_of(mid)] += 1
                self.decoded_by_mid[mid] += 1
                if track.kind == "video":
                    self.video_sizes.add((frame.width, frame.height))
        except Exception:
            pass

    def decoder_threads(self) -> set:
        return {
            t.receiver._RTCRtpReceiver__decoder_thread
            for t in self.sub.getTransceivers()
            if t.receiver._RTCRtpReceiver__decoder_thread is not None
        }

    async def close(self) -> None:
        for task in self._readers + ([self._answering] if self._answering else []):
            task.cancel()
        await self.pub.close()
        await self.sub.close()


class Media:
    def __init__(self) -> None:
        self.vp8 = encode_vp8()
        self.h264 = encode_h264()
        self.opus = encode_opus()
        self.vp8_set = set(self.vp8)


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
