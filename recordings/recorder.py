"""The live recorder: forwarded encoded frames -> one Matroska/WebM file per
participant per segment, remuxed with PyAV, never decoded or encoded.

How it fits the SFU: the recorder is a consumer like any viewer. For each producer
it records it attaches a sink (`Room.attach_sink`), so it gets the very frames a
viewer gets, starting at a keyframe. On the event loop a sink only does
bookkeeping: it decides which segment a frame belongs to, computes its timestamp
and appends a command to a deque. The recorder's writer thread wakes every
FLUSH_INTERVAL and muxes what is there (av.Packet straight from the frame bytes)
into files opened through the RecordingStore. Muxing measured ~2-3 µs per packet,
so the thread is not about CPU: it keeps file I/O (writes, fsync, hashing a
finished file) from ever stalling the event loop. (A ThreadPoolExecutor hand-over
per batch measured ~100 µs of loop CPU each; the deque costs nothing.)

Timeline. Each file's time zero is a wall-clock instant (in the manifest and in
the file's tags): the arrival of its first frames, corrected to their least
network delay. Within a file a stream's timestamps follow its RTP timestamps
(exact frame spacing), anchored to arrival times: re-anchored only when RTP and
arrival really disagree (a sender that stopped its RTP clock while paused, a
clock jump, drift), never by a stall that catches up (see _Stream). So media is
never stretched or squeezed over a gap; a gap stays a gap and is listed in the
manifest. A new segment (file) starts when the participant's set of recorded
tracks changes, after pause/resume, or when the participant sent nothing at all
for GAP_SPLIT seconds.

Crash safety. Files are written as Matroska/WebM with short clusters
(CLUSTER_MS), each completed cluster is flushed to the OS at once, and the store
hands out unbuffered files. A SIGKILL loses about FLUSH_INTERVAL + CLUSTER_MS of
media (more only while a stream's frames are held to decide a timing question:
START_WINDOW at a stream's start, CONFIRM_WINDOW after a stall); the file decodes
up to there. `recover()` (recover.py) finalises such files on the next start.

One module (~980 lines): the per-track remuxers, the segment clock and the crash-safe writer share state per run.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import functools
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import av
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rooms import EncodedFrame, Producer, Room
from rooms.stats import STATS

from .bitstream import opus_head, video_dimensions
from .manifest import (
    COMPLETE,
    FileEntry,
    Manifest,
    StreamEntry,
    _r,
    iso_time,
    manifest_key,
    owner_key,
    save_signed_manifest,
    sign_manifest,
    write_owner,
)
from .storage import RecordingStore, check_key

logger = logging.getLogger(__name__)

# mime -> (PyAV codec name, kind)
CODECS = {"video/vp8": ("vp8", "video"), "video/h264": ("h264", "video"), "audio/opus": ("opus", "audio")}

FLUSH_INTERVAL = 0.2  # s between writer-thread rounds (and loop-side timeout checks)
CLUSTER_MS = 250  # Matroska cluster length: the unit that reaches the disk
PENDING_TIMEOUT = 2.0  # s a new segment waits for the first frame of each of its tracks
GAP_SPLIT = 5.0  # s of silence from a participant (all tracks) that ends a segment
GAP_REPORT = 0.5  # s: a longer jump inside a stream is listed as a gap
# Timestamp mapping (see _Stream):
EARLY_TOLERANCE = 0.04  # s a frame may arrive "before" its RTP-derived time
LATE_TOLERANCE = 0.25  # s late after an arrival gap: a stall, or a stopped sender clock
CONFIRM_WINDOW = 1.0  # s of frames held to tell the two apart
START_WINDOW = 0.5  # s of a stream's first frames held to find its least-delayed frame
DRIFT_TOLERANCE = 1.0  # s late without a gap: drift, or a slow stall
KEYFRAME_RETRY = 1.0  # s between keyframe requests while a segment waits for one
MAX_BACKLOG_FRAMES = 5000  # frames not yet muxed before the sink reports overflow

MS = fractions.Fraction(1, 1000)
TAG = "MEDIATION_"
MUX_OPTIONS = {
    "cluster_time_limit": str(CLUSTER_MS),
    "cluster_size_limit": str(2 << 20),
    # Push each completed cluster to the file at once, and let a stream that went
    # quiet (muted video) hold the others back by at most 100 ms in the interleaver
    # (the default is 10 s: 10 s of audio lost on a crash).
    "flush_packets": "1",
    "max_interleave_delta": "100000",
}
_DEFAULT_STEP = {"video": 1 / 30, "audio": 0.02}


class RecordingError(RuntimeError):
    """A recorder call that cannot be honoured (stopped recorder, unsupported codec...)."""


def _slug(participant_id: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]", "_", participant_id)[:64].lstrip("_-") or "p"
    return slug


# ----------------------------------------------------------------------------- loop side


class _Stream:
    """One track inside one segment: timestamp mapping and counters.

    Mapping: segment seconds = offset + RTP seconds. RTP gives exact spacing and is
    trusted; arrival times anchor it to the wall clock, following the least-delayed
    frames (capture time ~ arrival - minimum delay):
      * the first START_WINDOW of a stream is held and the anchor taken from its
        least-delayed frame (a first keyframe that needed a retransmission arrives
        late, the frames after it show the real delay);
      * a frame arriving more than EARLY_TOLERANCE before its mapped time moves
        the anchor earlier (RTP jumped ahead, or the path got faster);
      * a frame arriving more than LATE_TOLERANCE after its mapped time after an
        arrival gap (or DRIFT_TOLERANCE late at all) is either a stall followed by a
        catch-up (RTP is right: keep it) or a sender whose RTP clock stood still
        while it sent nothing (RTP is wrong: follow arrival, leaving the gap). One
        frame cannot tell them apart, so the stream's frames are held for
        CONFIRM_WINDOW: if even the least-late of them is still late, the clock
        stood still and the anchor moves by that much; if the sender caught up,
        nothing moves.
    Timestamps may come out negative before the segment's header is written; the
    segment then moves its time zero earlier (see _open_segment).
    """

    __slots__ = (
        "producer_id", "kind", "codec", "index", "started", "offset", "last_arrival",
        "last_ms", "first_ms", "step", "frames", "gaps", "width", "height", "hold", "hold_until",
        "anchoring", "reanchors",
    )

    def __init__(self, producer_id: str, kind: str, codec: str) -> None:
        self.producer_id = producer_id
        self.kind = kind
        self.codec = codec
        self.index: Optional[int] = None  # position in the file, once the header is planned
        self.started = False
        self.offset = 0.0
        self.last_arrival = 0.0
        self.last_ms = -(1 << 62)
        self.first_ms = 0
        self.step = 0.0
        self.frames = 0
        self.gaps: list[list[float]] = []
        self.width: Optional[int] = None
        self.height: Optional[int] = None
        self.hold: Optional[list[tuple[EncodedFrame, float, float]]] = None
        self.hold_until = 0.0  # arrival time at which the held frames are decided
        self.anchoring = False  # the hold is the start window
        self.reanchors = 0

    def feed(self, frame: EncodedFrame, wall_start: float) -> list[tuple[int, EncodedFrame]]:
        """Timestamp (ms in the segment) the frame, or hold it: returns the frames
        ready to be written, in order."""
        t_arr = frame.arrival - wall_start
        r = frame.pts / frame.clock_rate
        if self.hold is not None:
            self.hold.append((frame, t_arr, r))
            if frame.arrival >= self.hold_until:
                return self.release()
            return []
        if not self.started:
            self.started = True
            self.offset = t_arr - r
            self._start_hold(frame, t_arr, r, START_WINDOW, anchoring=True)
            return []
        late = t_arr - (self.offset + r)
        if late > DRIFT_TOLERANCE or (late > LATE_TOLERANCE and frame.arrival - self.last_arrival > LATE_TOLERANCE):
            self._start_hold(frame, t_arr, r, CONFIRM_WINDOW, anchoring=False)
            return []
        return [self._place(frame, t_arr, r)]

    def _start_hold(self, frame: EncodedFrame, t_arr: float, r: float, window: float, anchoring: bool) -> None:
        self.hold = [(frame, t_arr, r)]
        self.hold_until = frame.arrival + window
        self.anchoring = anchoring

    def release(self) -> list[tuple[int, EncodedFrame]]:
        """Decide what the held frames mean and emit them."""
        held, self.hold = self.hold or [], None
        if not held:
            return []
        least_late = min(t_arr - (self.offset + r) for _, t_arr, r in held)
        if self.anchoring:
            self.offset += least_late  # anchor on the least-delayed first frame
            self.anchoring = False
        elif least_late > LATE_TOLERANCE:
            # Never caught up: the sender's clock stood still across the gap.
            self.offset += least_late
            self.reanchors += 1
        return [self._place(frame, t_arr, r) for frame, t_arr, r in held]

    def shift(self, ms: int) -> None:
        """The segment's time zero moved `ms` earlier."""
        self.offset += ms / 1000
        if self.frames:
            self.first_ms += ms
            self.last_ms += ms
            self.gaps = [[round(a + ms / 1000, 3), round(b + ms / 1000, 3)] for a, b in self.gaps]

    def _place(self, frame: EncodedFrame, t_arr: float, r: float) -> tuple[int, EncodedFrame]:
        if self.offset + r - t_arr > EARLY_TOLERANCE:
            self.offset = t_arr + EARLY_TOLERANCE - r
            self.reanchors += 1
        return self._emit(frame, r)

    def _emit(self, frame: EncodedFrame, r: float) -> tuple[int, EncodedFrame]:
        ms = max(round((self.offset + r) * 1000), self.last_ms + 1)
        if self.frames == 0:
            self.first_ms = ms
        else:
            step = (ms - self.last_ms) / 1000
            if step > GAP_REPORT:
                gap_start = self.last_ms / 1000 + (self.step or _DEFAULT_STEP[self.kind])
                self.gaps.append([round(gap_start, 3), round(ms / 1000, 3)])
            else:
                self.step = step
        self.last_ms = ms
        self.last_arrival = frame.arrival
        self.frames += 1
        return ms, frame

    @property
    def end(self) -> float:
        step = self.step if 0 < self.step <= 0.25 else _DEFAULT_STEP[self.kind]
        return self.last_ms / 1000 + step

    def entry(self) -> StreamEntry:
        audio = self.kind == "audio"
        return StreamEntry(
            kind=self.kind,
            codec=self.codec,
            frames=self.frames,
            offset=_r(self.first_ms / 1000),
            duration=_r(self.end - self.first_ms / 1000),
            producer_id=self.producer_id,
            width=self.width,
            height=self.height,
            sample_rate=48000 if audio else None,
            channels=2 if audio else None,
            gaps=self.gaps,
        )


class _Segment:
    _ids = 0

    def __init__(self, participant: "_Participant", n: int, key: str, container: str, wall_start: float) -> None:
        _Segment._ids += 1
        self.id = _Segment._ids
        self.participant = participant
        self.n = n
        self.key = key
        self.container = container
        self.wall_start = wall_start
        self.last_arrival = wall_start
        self.streams: dict[str, _Stream] = {}
        self.state = "pending"  # -> "open" (header planned) -> "closed"
        self.held: list[tuple] = []  # packets waiting for the header
        self.end_reason = "stopped"

    def duration(self) -> float:
        ends = [s.end for s in self.streams.values() if s.index is not None and s.frames]
        return max(ends) if ends else 0.0


class _Tap:
    """The ConsumerSink of one recorded producer."""

    def __init__(self, recorder: "SessionRecorder", participant: "_Participant", producer: Producer) -> None:
        self.recorder = recorder
        self.participant = participant
        self.producer_id = producer.id
        self.kind = producer.kind
        self.codec = CODECS[producer.mime][0]
        self.consumer: Any = None
        self.closed = False
        self.last_keyframe_request = float("-inf")
        self.frames_recorded = 0
        # ConsumerSink.push, called for every frame: a C-level partial saves a
        # Python call on the hot path.
        self.push: Callable[[EncodedFrame], bool] = functools.partial(recorder._on_frame, self)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.recorder._on_tap_closed(self)

    def want_keyframe(self, now: float) -> None:
        if self.kind == "video" and self.consumer is not None and now - self.last_keyframe_request >= KEYFRAME_RETRY:
            self.last_keyframe_request = now
            self.consumer.request_keyframe()


@dataclass
class _Participant:
    id: str
    # None: the participant's camera and microphone; "screen": their screen share, in files of
    # its own (a share starting or ending does not cut the camera's file).
    track: Optional[str] = None
    name: Optional[str] = None
    role: Optional[str] = None
    paused: bool = False
    taps: dict[str, _Tap] = field(default_factory=dict)
    segment: Optional[_Segment] = None


# ----------------------------------------------------------------------------- writer thread


def _resolve(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


class _CountedFile:
    """A store stream as the muxer sees it: counts the bytes the file grows by into
    rooms.stats.STATS.recorded_bytes (the muxer's seek-backs to patch headers add
    nothing). Costs one call per muxer flush, on the writer thread."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._pos = 0  # a new file (open_write "xb")
        self._end = 0

    def write(self, data: Any) -> Any:
        n = self._raw.write(data)
        self._pos += len(data) if n is None else n
        if self._pos > self._end:
            STATS.add_recorded(self._pos - self._end)
            self._end = self._pos
        return n

    def seek(self, offset: int, whence: int = 0) -> int:
        pos = self._raw.seek(offset, whence)
        self._pos = pos if isinstance(pos, int) else self._raw.tell()
        return self._pos

    def __getattr__(self, name: str) -> Any:  # tell, seekable, writable, close...
        return getattr(self._raw, name)


class _OpenFile:
    def __init__(self, key: str, stream: Any, container: Any) -> None:
        self.key = key
        self.file = stream
        self.container = container
        self.streams: list[Any] = []
        self.packets = 0
        self.error: Optional[str] = None


_template_lock = threading.Lock()
_opus_template_stream: Any = None


def _opus_template() -> Any:
    """A demuxed Opus stream to create output Opus streams from: PyAV gives mux-only
    streams (add_mux_stream) no way to carry the OpusHead, and add_stream("opus")
    would open an encoder. Built once per process from a one-packet file."""
    global _opus_template_stream
    with _template_lock:
        if _opus_template_stream is None:
            import io

            buf = io.BytesIO()
            with av.open(buf, "w", format="matroska") as out:
                stream = out.add_mux_stream("opus", rate=48000)
                packet = av.Packet(b"\xf8")  # a valid empty 20 ms CELT frame
                packet.pts = packet.dts = 0
                packet.time_base = MS
                packet.stream = stream
                out.mux(packet)
            buf.seek(0)
            _opus_template_stream = av.open(buf, "r").streams.audio[0]
        return _opus_template_stream


class _Writer(threading.Thread):
    """The recorder's writer thread. The event loop appends commands to a deque
    (no lock, no wake-up: an append is all a frame costs the loop); the thread wakes
    every FLUSH_INTERVAL, or at once when asked, and executes them in order:
    ("open", seg, spec) / ("pkt", seg, stream, ms, data, key) / ("close", seg) /
    ("barrier", future) / ("stop",). Results go back with call_soon_threadsafe."""

    def __init__(
        self, store: RecordingStore, loop: asyncio.AbstractEventLoop, on_closed: Callable, commands: collections.deque
    ) -> None:
        super().__init__(name="recorder-writer", daemon=True)
        self.store = store
        self.loop = loop
        self.on_closed = on_closed
        self.commands = commands
        self.wake = threading.Event()
        self.written = 0  # pkt commands done (only this thread writes it)
        self.files: dict[int, _OpenFile] = {}

    def run(self) -> None:
        commands = self.commands
        while True:
            self.wake.wait(FLUSH_INTERVAL)
            self.wake.clear()
            while commands:
                command = commands.popleft()
                op = command[0]
                try:
                    if op == "pkt":
                        self._packet(command)
                    elif op == "open":
                        self._open(command[1], command[2])
                    elif op == "close":
                        self._reply(self.on_closed, command[1], self._close(command[1]))
                    elif op == "barrier":
                        self._reply(_resolve, command[1], None)
                    elif op == "finalize":
                        self.store.finalize(command[1])
                    elif op == "stop":
                        return
                except Exception:  # noqa: BLE001 - the thread must survive anything
                    logger.exception("recorder writer: %s failed", op)

    def _reply(self, callback: Callable, *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is gone (process shutting down)
            pass

    def _packet(self, command: tuple) -> None:
        self.written += 1
        of = self.files.get(command[1])
        if of is None or of.error:
            return
        try:
            packet = av.Packet(command[4])
            packet.pts = packet.dts = command[3]
            packet.time_base = MS
            packet.stream = of.streams[command[2]]
            packet.is_keyframe = command[5]
            of.container.mux(packet)
            of.packets += 1
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
            logger.exception("recording %s: muxing failed", of.key)
            of.error = f"mux: {exc!r}"

    def _open(self, seg_id: int, spec: dict) -> None:
        key = spec["key"]
        try:
            stream = self.store.open_write(key)
        except Exception as exc:  # noqa: BLE001
            logger.exception("recording %s: cannot create the file", key)
            of = _OpenFile(key, None, None)
            of.error = f"open: {exc!r}"
            self.files[seg_id] = of
            return
        of = _OpenFile(key, stream, None)
        self.files[seg_id] = of
        try:
            container = av.open(_CountedFile(stream), "w", format=spec["format"], options=dict(MUX_OPTIONS))
            of.container = container
            container.metadata.update(spec["tags"])
            for s in spec["streams"]:
                if s["codec"] == "opus":
                    out = container.add_stream_from_template(_opus_template())
                    out.codec_context.extradata = opus_head()
                else:
                    out = container.add_mux_stream(s["codec"], width=s["width"] or 0, height=s["height"] or 0)
                out.time_base = MS
                out.metadata.update({f"{TAG}PRODUCER": s["producer_id"], f"{TAG}KIND": s["kind"]})
                of.streams.append(out)
        except Exception as exc:  # noqa: BLE001
            logger.exception("recording %s: cannot start the container", key)
            of.error = f"open: {exc!r}"

    def _close(self, seg_id: int) -> dict:
        of = self.files.pop(seg_id, None)
        if of is None:
            return {"error": "never opened"}
        if of.container is not None:
            try:
                of.container.close()  # trailer: cues, duration, segment size
            except Exception as exc:  # noqa: BLE001
                logger.exception("recording %s: closing the container failed", of.key)
                of.error = of.error or f"close: {exc!r}"
        if of.file is None:
            return {"error": of.error}
        try:
            of.file.close()
            if of.packets == 0:
                self.store.delete(of.key)
                return {"empty": True, "error": of.error}
            self.store.finalize(of.key)
            return {
                "size": self.store.size(of.key),
                "sha256": self.store.sha256(of.key),
                "packets": of.packets,
                "error": of.error,
            }
        except Exception as exc:  # noqa: BLE001
            logger.exception("recording %s: finalising failed", of.key)
            return {"error": of.error or f"finalize: {exc!r}"}


# ----------------------------------------------------------------------------- recorder


SegmentCallback = Callable[[FileEntry], Any]


class SessionRecorder:
    """Records one live session into `store` under `session_key`.

    The caller decides *what* is recorded (consent, caucus rules):
    `record_producer()` for every producer that may be recorded,
    `pause_participant()` / `resume_participant()` around periods that may not, and
    `stop()` at the end, which returns the Manifest (and, given a `signing_key`,
    signs it and saves it as <session_key>/manifest.json). `on_segment_closed(
    FileEntry)` (plain or coroutine function) runs on the event loop as each file is
    finished and hashed (the final manifest may adjust a file's session offset by a
    few ms if the session's first frames moved the session start).

    One recorder per session_key: files already under the key are never
    overwritten, and a session that already has a manifest is refused.

    With `node_id` the run is claimed for that server node before anything else is
    written (<session_key>/node, see recordings.manifest.owner_key), so crash
    recovery on a shared RECORDINGS_DIR knows whose run it is; a run that already
    has an owner record is refused.
    """

    def __init__(
        self,
        store: RecordingStore,
        session_key: str,
        *,
        on_segment_closed: Optional[SegmentCallback] = None,
        signing_key: Optional[Ed25519PrivateKey] = None,
        started_at: Optional[float] = None,
        node_id: Optional[str] = None,
    ) -> None:
        if signing_key is not None and not isinstance(signing_key, Ed25519PrivateKey):
            raise TypeError(f"signing_key must be an Ed25519PrivateKey, not {type(signing_key).__name__}")
        self.store = store
        self.session_key = check_key(session_key)
        if store.exists(manifest_key(session_key)):
            raise RecordingError(f"session {session_key} already has a manifest; use a new session key")
        self.on_segment_closed = on_segment_closed
        self.signing_key = signing_key
        self.started_at = time.time() if started_at is None else float(started_at)
        self.stopped = False
        self.files: list[FileEntry] = []
        self.errors: list[str] = []
        self._wall_starts: dict[str, float] = {}
        self._participants: dict[str, _Participant] = {}
        self._taps: dict[str, _Tap] = {}
        self._all_taps: list[_Tap] = []
        self._segments: dict[int, _Segment] = {}  # not yet reported closed
        self._taken = set(store.list(session_key))
        self._counters: dict[str, int] = {}
        self._queued = 0  # pkt commands handed to the writer (loop side)
        self._writer: Optional[_Writer] = None  # started with the first producer
        self._commands: collections.deque = collections.deque()
        self._callbacks: set[asyncio.Task] = set()
        self._ticker: Optional[asyncio.Task] = None
        self.frames_in = 0
        self.frames_dropped = 0
        self.node_id = node_id
        if node_id is not None:
            try:
                write_owner(store, self.session_key, node_id)
            except FileExistsError:
                raise RecordingError(f"run {session_key} already has an owner; use a new session key") from None
            # Made durable by the writer thread, off the event loop, before any media.
            self._commands.append(("finalize", owner_key(self.session_key)))

    # ------------------------------------------------------------------ public API

    def record_producer(
        self,
        room: Room,
        producer: Producer,
        *,
        name: Optional[str] = None,
        role: Optional[str] = None,
    ) -> None:
        """Start recording `producer` (from its next keyframe). name/role default
        to the room participant's."""
        self._require_running()
        if producer.mime not in CODECS:
            raise RecordingError(f"cannot record {producer.mime}: supported are {', '.join(CODECS)}")
        if producer.closed:
            raise RecordingError(f"producer {producer.id} is closed")
        if producer.id in self._taps:
            raise RecordingError(f"producer {producer.id} is already being recorded")
        self._start_ticker()
        pid = producer.participant_id
        participant = self._participant(pid, "screen" if producer.role == "screen" else None)
        room_participant = room.participants.get(pid)
        participant.name = name if name is not None else participant.name or getattr(room_participant, "name", None)
        participant.role = role if role is not None else participant.role or getattr(room_participant, "role", None)
        # A file's tracks are fixed by its header: a new track means a new file.
        self._close_segment(participant, "tracks_changed")
        tap = _Tap(self, participant, producer)
        participant.taps[producer.id] = tap
        self._taps[producer.id] = tap
        self._all_taps.append(tap)
        try:
            tap.consumer = room.attach_sink(producer.id, tap, label="recorder")
        except Exception:
            participant.taps.pop(producer.id, None)
            self._taps.pop(producer.id, None)
            raise

    def stop_producer(self, producer_id: str) -> bool:
        """Stop recording one producer (its segment ends). False if it was not
        being recorded (e.g. it already closed)."""
        tap = self._taps.get(producer_id)
        if tap is None:
            return False
        if tap.consumer is not None:
            tap.consumer.close()  # -> tap.close() -> _on_tap_closed
        else:
            tap.close()
        return True

    def pause_participant(self, participant_id: str) -> None:
        """Write nothing of this participant until resumed (no consent yet, or a
        caucus that may not be recorded). Ends the current segment. Also valid
        before the participant publishes anything."""
        self._require_running()
        for participant in self._entries(participant_id):
            participant.paused = True
            self._close_segment(participant, "paused")

    def resume_participant(self, participant_id: str) -> None:
        """Record again; the next frames open a new segment (video from a keyframe,
        requested now)."""
        self._require_running()
        now = time.monotonic()
        for participant in self._entries(participant_id):
            if not participant.paused:
                continue
            participant.paused = False
            for tap in participant.taps.values():
                tap.want_keyframe(now)

    def is_paused(self, participant_id: str) -> bool:
        participant = self._participants.get(participant_id)
        return bool(participant and participant.paused)

    def _entries(self, participant_id: str) -> list[_Participant]:
        """The participant's camera-and-microphone entry (made if need be) and their share's."""
        main = self._participant(participant_id)
        share = self._participants.get(f"{participant_id}\0screen")
        return [main, share] if share is not None else [main]

    @property
    def recorded_producers(self) -> list[str]:
        return list(self._taps)

    def stats(self) -> list[dict]:
        """Per producer ever recorded: frames the consumer delivered, frames
        recorded (the rest arrived while paused or before a needed keyframe)."""
        return [
            {
                "producer_id": t.producer_id,
                "participant_id": t.participant.id,
                "kind": t.kind,
                "codec": t.codec,
                "active": not t.closed,
                "delivered": t.consumer.frames if t.consumer is not None else 0,
                "recorded": t.frames_recorded,
            }
            for t in self._all_taps
        ]

    async def flush(self) -> None:
        """Wait until the writer has executed everything handed to it so far."""
        if self._writer is None or not self._writer.is_alive():
            return
        done = asyncio.get_running_loop().create_future()
        self._commands.append(("barrier", done))
        self._writer.wake.set()
        await done

    async def stop(self) -> Manifest:
        """Stop recording everything, finish every file, and return the manifest
        (signed and saved as <session_key>/manifest.json if a signing_key was given)."""
        if self.stopped:
            raise RecordingError("recorder already stopped")
        self.stopped = True
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        for participant in self._participants.values():
            self._close_segment(participant, "stopped")
        for tap in list(self._taps.values()):
            if tap.consumer is not None:
                tap.consumer.close()
        self._taps.clear()
        await self.flush()
        if self._writer is not None:
            self._commands.append(("stop",))
            self._writer.wake.set()
            await asyncio.to_thread(self._writer.join)
        if self._callbacks:
            await asyncio.gather(*list(self._callbacks), return_exceptions=True)
        for entry in self.files:  # the session start may have moved (see _open_segment)
            entry.offset = _r(self._wall_starts[entry.key] - self.started_at)
        manifest = Manifest(
            session_key=self.session_key,
            status=COMPLETE,
            started_at=iso_time(self.started_at),
            stopped_at=iso_time(time.time()),
            files=sorted(self.files, key=lambda f: (f.offset, f.participant_id, f.segment)),
            errors=list(self.errors),
        )
        if self.signing_key is not None:
            document = sign_manifest(manifest, self.signing_key)
            await asyncio.to_thread(save_signed_manifest, self.store, document)
        return manifest

    # ------------------------------------------------------------------ frames (event loop)

    def _on_frame(self, tap: _Tap, frame: EncodedFrame) -> bool:
        participant = tap.participant
        if self.stopped or tap.closed or participant.paused:
            return True  # not recording it is not an overflow
        self.frames_in += 1
        if self._writer is not None and self._queued - self._writer.written >= MAX_BACKLOG_FRAMES:
            self.frames_dropped += 1
            return False  # the writer is stuck: drop, the consumer resyncs on a keyframe
        video = tap.kind == "video"
        segment = participant.segment
        if segment is not None and frame.arrival - segment.last_arrival > GAP_SPLIT:
            self._close_segment(participant, "gap")
            segment = None
        stream = segment.streams.get(tap.producer_id) if segment is not None else None
        size = None
        if stream is None or not stream.started:
            # A video track starts on a keyframe that describes the picture (an
            # H.264 IDR without its SPS would leave the file without one).
            size = video_dimensions(tap.codec, frame.data) if video and frame.keyframe else None
            if video and size is None:
                tap.want_keyframe(time.monotonic())
                return True
        if segment is None:
            segment = self._new_segment(participant, frame.arrival)
            stream = segment.streams.get(tap.producer_id)
        if stream is None:  # cannot happen: a new tap always closes the segment
            return True
        if not stream.started:
            if segment.state != "pending":
                # This track missed the header (its first frame came after
                # PENDING_TIMEOUT): start a file that has it.
                self._close_segment(participant, "tracks_changed")
                segment = self._new_segment(participant, frame.arrival)
                stream = segment.streams[tap.producer_id]
            if video:
                stream.width, stream.height = size
        ready = stream.feed(frame, segment.wall_start)
        segment.last_arrival = frame.arrival
        tap.frames_recorded += 1
        self._queue(segment, stream, ready)
        if segment.state == "pending" and self._ready_to_open(segment):
            self._open_segment(segment)
        return True

    @staticmethod
    def _ready_to_open(segment: _Segment) -> bool:
        # Every track has started and its start window is decided.
        return all(s.started and s.hold is None for s in segment.streams.values())

    def _queue(self, segment: _Segment, stream: _Stream, ready: list[tuple[int, EncodedFrame]]) -> None:
        if segment.state == "open":
            if stream.index is None:
                return
            append = self._commands.append
            for ms, frame in ready:
                append(("pkt", segment.id, stream.index, ms, frame.data, frame.keyframe))
            self._queued += len(ready)
        else:
            for ms, frame in ready:
                segment.held.append((stream.producer_id, ms, frame.data, frame.keyframe))

    def _on_tap_closed(self, tap: _Tap) -> None:
        self._taps.pop(tap.producer_id, None)
        participant = tap.participant
        participant.taps.pop(tap.producer_id, None)
        if not self.stopped:
            self._close_segment(participant, "producer_closed")

    # ------------------------------------------------------------------ segments

    def _participant(self, participant_id: str, track: Optional[str] = None) -> _Participant:
        if not isinstance(participant_id, str) or not participant_id:
            raise ValueError(f"participant id must be a non-empty string, not {participant_id!r}")
        key = participant_id if track is None else f"{participant_id}\0{track}"
        participant = self._participants.get(key)
        if participant is None:
            participant = self._participants[key] = _Participant(participant_id, track)
            if track is not None:  # a share made while its sharer is paused waits with them
                participant.paused = self.is_paused(participant_id)
        return participant

    def _new_segment(self, participant: _Participant, wall_start: float) -> _Segment:
        taps = list(participant.taps.values())
        h264 = any(t.codec == "h264" for t in taps)
        container, ext = ("matroska", "mkv") if h264 else ("webm", "webm")
        slug = _slug(participant.id) + (f"-{participant.track}" if participant.track else "")
        n = self._counters.get(slug, 0)
        while True:
            n += 1
            key = f"{self.session_key}/{slug}-{n}.{ext}"
            if key not in self._taken:
                break
        self._counters[slug] = n
        self._taken.add(key)
        segment = _Segment(participant, n, key, container, wall_start)
        for t in taps:
            segment.streams[t.producer_id] = _Stream(t.producer_id, t.kind, t.codec)
        participant.segment = segment
        self._segments[segment.id] = segment
        return segment

    def _open_segment(self, segment: _Segment) -> None:
        """Plan the header with the tracks that have started, and release the
        packets held until now."""
        for stream in segment.streams.values():
            if stream.hold:
                self._queue(segment, stream, stream.release())
        # Anchoring on the least-delayed first frames can put a frame before the
        # first arrival: move the file's time zero back so nothing is negative.
        lowest = min((h[1] for h in segment.held), default=0)
        if lowest < 0:
            segment.wall_start += lowest / 1000
            segment.held = [(pid, ms - lowest, data, key) for pid, ms, data, key in segment.held]
            for stream in segment.streams.values():
                stream.shift(-lowest)
            self.started_at = min(self.started_at, segment.wall_start)
        started = [s for s in segment.streams.values() if s.started]
        if not started:  # nothing arrived in time: no file
            segment.state = "closed"
            self._segments.pop(segment.id, None)
            if segment.participant.segment is segment:
                segment.participant.segment = None
            return
        for index, stream in enumerate(started):
            stream.index = index
        participant = segment.participant
        tags = {
            f"{TAG}SESSION": self.session_key,
            f"{TAG}SESSION_START": repr(self.started_at),
            f"{TAG}PARTICIPANT": participant.id,
            f"{TAG}SEGMENT": str(segment.n),
            f"{TAG}WALL_START": repr(segment.wall_start),
            "DATE_RECORDED": iso_time(segment.wall_start),
        }
        if participant.name:
            tags[f"{TAG}NAME"] = participant.name
        if participant.role:
            tags[f"{TAG}ROLE"] = participant.role
        if participant.track:
            tags[f"{TAG}TRACK"] = participant.track
        spec = {
            "key": segment.key,
            "format": segment.container,
            "tags": tags,
            "streams": [
                {"codec": s.codec, "kind": s.kind, "producer_id": s.producer_id, "width": s.width, "height": s.height}
                for s in started
            ],
        }
        self._commands.append(("open", segment.id, spec))
        held = sorted(segment.held, key=lambda h: h[1])
        segment.held = []
        for producer_id, ms, data, key in held:
            stream = segment.streams[producer_id]
            if stream.index is not None:
                self._commands.append(("pkt", segment.id, stream.index, ms, data, key))
                self._queued += 1
        segment.state = "open"

    def _close_segment(self, participant: _Participant, reason: str) -> None:
        segment = participant.segment
        if segment is None:
            return
        participant.segment = None
        for stream in segment.streams.values():
            if stream.hold:
                self._queue(segment, stream, stream.release())
        if segment.state == "pending":
            if not any(s.started for s in segment.streams.values()):
                self._segments.pop(segment.id, None)
                return
            self._open_segment(segment)
        segment.state = "closed"
        segment.end_reason = reason
        self._commands.append(("close", segment.id))

    # ------------------------------------------------------------------ writer hand-over

    def _require_running(self) -> None:
        if self.stopped:
            raise RecordingError("recorder is stopped")

    def _start_ticker(self) -> None:
        if self._ticker is None:
            loop = asyncio.get_running_loop()
            self._writer = _Writer(self.store, loop, self._closed, self._commands)
            self._writer.start()
            self._ticker = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        """Loop-side timeouts: tracks that never started, held frames nothing followed."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                now = time.time()
                for participant in self._participants.values():
                    segment = participant.segment
                    if segment is None:
                        continue
                    for stream in segment.streams.values():
                        if stream.hold and now >= stream.hold_until:
                            self._queue(segment, stream, stream.release())  # nothing came after
                    if segment.state == "pending" and (
                        self._ready_to_open(segment) or now - segment.wall_start > PENDING_TIMEOUT
                    ):
                        self._open_segment(segment)  # record what has started
            except Exception:  # never let the ticker die silently
                logger.exception("recorder %s: tick failed", self.session_key)

    def _closed(self, seg_id: int, result: dict) -> None:
        """A file is finished (on the loop, from the writer)."""
        segment = self._segments.pop(seg_id, None)
        if segment is None:
            return
        if "sha256" not in result:
            if result.get("error"):
                message = f"{segment.key} ({segment.participant.id}, {iso_time(segment.wall_start)}): {result['error']}"
                logger.error("recording lost: %s", message)
                self.errors.append(message)
            return
        entry = self._entry(segment, result)
        self._wall_starts[entry.key] = segment.wall_start
        self.files.append(entry)
        self._notify(entry)

    def _entry(self, segment: _Segment, result: dict) -> FileEntry:
        participant = segment.participant
        return FileEntry(
            key=segment.key,
            participant_id=participant.id,
            name=participant.name,
            role=participant.role,
            track=participant.track,
            segment=segment.n,
            container=segment.container,
            started_at=iso_time(segment.wall_start),
            offset=_r(segment.wall_start - self.started_at),
            duration=_r(segment.duration()),
            size=result["size"],
            sha256=result["sha256"],
            streams=[s.entry() for s in sorted(segment.streams.values(), key=lambda s: s.index or 0)
                     if s.index is not None],
            end_reason=segment.end_reason,
            # A write error after some packets (disk full) still leaves a file that
            # plays up to there.
            playable=result.get("packets", 0) > 0,
            error=result.get("error"),
        )

    def _notify(self, entry: FileEntry) -> None:
        if self.on_segment_closed is None:
            return
        try:
            result = self.on_segment_closed(entry)
        except Exception:
            logger.exception("on_segment_closed failed for %s", entry.key)
            return
        if asyncio.iscoroutine(result):
            task = asyncio.ensure_future(result)
            self._callbacks.add(task)
            task.add_done_callback(self._callbacks.discard)
