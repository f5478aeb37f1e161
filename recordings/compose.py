"""Offline export: one grid video with mixed audio from every file of a session,
placed on one timeline by the manifest's wall-clock offsets. Decoding and encoding
are fine here (never on the live path); run it in a worker / CLI process.

Gaps stay gaps: a tile is black where its participant has no video (not recorded,
paused, muted, between segments) and their audio is silent there; nothing is
stretched to fill them.
"""

from __future__ import annotations

import fractions
import logging
import math
import os
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import av

from .manifest import FileEntry, Manifest, load_manifest
from .storage import RecordingStore

logger = logging.getLogger(__name__)

RATE = 48000
CHUNK = 1.0  # s of timeline rendered per step (and per progress report)
_OUTPUTS = {  # extension -> (format, video encoder, audio encoder)
    ".mp4": ("mp4", "libx264", "aac"),
    ".mkv": ("matroska", "libx264", "aac"),
    ".webm": ("webm", "libvpx", "libopus"),
}


@dataclass
class ComposeResult:
    path: str
    duration: float
    width: int
    height: int
    participants: list[str]


def compose(
    store: RecordingStore,
    session_key: str,
    out_path: str | os.PathLike,
    progress: Optional[Callable[[float], None]] = None,
    *,
    tile: tuple[int, int] = (320, 180),
    fps: int = 15,
    columns: Optional[int] = None,
    manifest: Optional[Manifest] = None,
) -> ComposeResult:
    """Render the session into `out_path` (.mp4 / .mkv: H.264 + AAC; .webm: VP8 +
    Opus). `progress(fraction)` is called after every rendered second and with 1.0
    at the end. Uses the stored manifest unless one is given."""
    out_path = os.fspath(out_path)
    ext = os.path.splitext(out_path)[1].lower()
    if ext not in _OUTPUTS:
        raise ValueError(f"output must end in {', '.join(_OUTPUTS)}, not {out_path!r}")
    tw, th = int(tile[0]) & ~1, int(tile[1]) & ~1
    if not (16 <= tw <= 1920 and 16 <= th <= 1080):
        raise ValueError(f"tile size must be between 16x16 and 1920x1080, not {tile!r}")
    if not 1 <= int(fps) <= 60:
        raise ValueError(f"fps must be 1..60, not {fps!r}")
    if columns is not None and not 1 <= int(columns) <= 16:
        raise ValueError(f"columns must be 1..16, not {columns!r}")
    if manifest is None:
        try:
            manifest = load_manifest(store, session_key)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"session {session_key} has no manifest (stop the recorder or recover() it first)"
            ) from None
    files = [f for f in manifest.files if f.playable and f.duration > 0]
    if not files:
        raise ValueError(f"session {session_key} has no playable recording")

    people: list[str] = []
    tiles: list[tuple[str, Optional[str]]] = []  # a participant's camera; a screen share gets a tile of its own
    for f in sorted(files, key=lambda f: f.offset):
        if f.participant_id not in people:
            people.append(f.participant_id)
        if (f.participant_id, f.track) not in tiles:
            tiles.append((f.participant_id, f.track))
    cols = columns or math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    width, height = cols * tw, rows * th
    total = max(f.end for f in files)
    fmt, vcodec, acodec = _OUTPUTS[ext]

    videos = [_VideoTrack(store, [f for f in files if (f.participant_id, f.track) == t]) for t in tiles]
    audios = [_AudioTrack(store, [f for f in files if f.participant_id == p]) for p in people]
    canvas = _Canvas(width, height)
    mixer = _Mixer(len(people))
    try:
        with av.open(out_path, "w", format=fmt) as out:
            vs = out.add_stream(vcodec, rate=fps)
            vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
            if vcodec == "libx264":
                vs.options = {"preset": "veryfast", "crf": "23"}
            else:
                vs.options = {"deadline": "realtime", "cpu-used": "8", "b": "1M"}
            aus = out.add_stream(acodec, rate=RATE)
            aus.layout = "stereo"
            aus.bit_rate = 128_000
            frame_index = 0
            chunk_start = 0.0
            while chunk_start < total:
                chunk_end = min(total, chunk_start + CHUNK)
                # Video: every output frame whose time falls in this chunk.
                while frame_index / fps < chunk_end:
                    t = frame_index / fps
                    canvas.clear()
                    for i, track in enumerate(videos):
                        picture = track.frame_at(t)
                        if picture is not None:
                            canvas.place(picture, (i % cols) * tw, (i // cols) * th, tw, th)
                    frame = canvas.frame()
                    frame.pts = frame_index
                    frame.time_base = fractions.Fraction(1, fps)
                    out.mux(vs.encode(frame))
                    frame_index += 1
                # Audio: the same span, every participant mixed.
                s0, s1 = round(chunk_start * RATE), round(chunk_end * RATE)
                for mixed in mixer.mix([a.read(s0, s1) for a in audios], s0):
                    mixed.pts = None
                    out.mux(aus.encode(mixed))
                chunk_start = chunk_end
                if progress is not None and chunk_end < total:
                    progress(chunk_end / total)
            for mixed in mixer.finish():
                mixed.pts = None
                out.mux(aus.encode(mixed))
            out.mux(vs.encode(None))
            out.mux(aus.encode(None))
    finally:
        for track in (*videos, *audios):
            track.close()
    if progress is not None:
        progress(1.0)
    return ComposeResult(out_path, total, width, height, people)


class _Track:
    """One participant's files of one kind, decoded in timeline order."""

    kind = "video"

    def __init__(self, store: RecordingStore, files: list[FileEntry]) -> None:
        self.store = store
        self.files = [f for f in sorted(files, key=lambda f: f.offset) if any(s.kind == self.kind for s in f.streams)]
        self._open: list = []
        self._items = self._iterate()

    def _decode(self, f: FileEntry) -> Iterator:
        handle = self.store.open_read(f.key)
        container = av.open(handle, "r")
        self._open = [container, handle]
        try:
            stream = next(s for s in container.streams if s.type == self.kind)
            try:
                for frame in container.decode(stream):
                    if frame.pts is not None:
                        yield f.offset + float(frame.pts * stream.time_base), frame
            except av.FFmpegError as exc:  # a damaged tail: keep what decoded
                logger.warning("compose: %s stops decoding early: %s", f.key, exc)
        finally:
            self.close()

    def _iterate(self) -> Iterator:
        for f in self.files:
            yield from self._decode(f)

    def close(self) -> None:
        for obj in self._open:
            try:
                obj.close()
            except Exception:  # noqa: BLE001
                pass
        self._open = []


class _VideoTrack(_Track):
    kind = "video"

    def __init__(self, store: RecordingStore, files: list[FileEntry]) -> None:
        super().__init__(store, files)
        # Session-time spans with real video: each stream's extent minus its gaps.
        self.spans: list[tuple[float, float]] = []
        for f in self.files:
            s = next(s for s in f.streams if s.kind == "video")
            start, end = f.offset + s.offset, f.offset + s.offset + s.duration
            for a, b in s.gaps:
                self.spans.append((start, f.offset + a))
                start = f.offset + b
            self.spans.append((start, end))
        self._next = next(self._items, None)
        self._current = None

    def frame_at(self, t: float):
        while self._next is not None and self._next[0] <= t:
            self._current = self._next
            self._next = next(self._items, None)
        if self._current is None or not any(a <= t < b for a, b in self.spans):
            return None
        return self._current[1]


class _AudioTrack(_Track):
    kind = "audio"

    def __init__(self, store: RecordingStore, files: list[FileEntry]) -> None:
        super().__init__(store, files)
        self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=RATE)
        self._pending: Optional[tuple[int, bytes]] = None  # (first sample, s16 stereo bytes)
        self._samples = self._pcm()

    def _pcm(self) -> Iterator[tuple[int, bytes]]:
        for t, frame in self._items:
            start = round(t * RATE)
            for out in self._resampler.resample(frame):
                data = bytes(out.planes[0])[: out.samples * 4]
                yield start, data
                start += out.samples

    def read(self, s0: int, s1: int) -> bytearray:
        """Samples [s0, s1) of the timeline, silence where there is nothing."""
        buf = bytearray((s1 - s0) * 4)
        while True:
            if self._pending is None:
                self._pending = next(self._samples, None)
                if self._pending is None:
                    return buf
            start, data = self._pending
            end = start + len(data) // 4
            if start >= s1:
                return buf
            lo, hi = max(start, s0), min(end, s1)
            if hi > lo:
                buf[(lo - s0) * 4:(hi - s0) * 4] = data[(lo - start) * 4:(hi - start) * 4]
            if end > s1:
                return buf  # the rest belongs to the next chunk
            self._pending = None


class _Mixer:
    """Sums the participants' audio with FFmpeg's amix (no per-sample Python)."""

    def __init__(self, inputs: int) -> None:
        self.graph = av.filter.Graph()
        self.sources = [
            self.graph.add_abuffer(
                format="s16", sample_rate=RATE, layout="stereo", time_base=fractions.Fraction(1, RATE)
            )
            for _ in range(inputs)
        ]
        sink = self.graph.add("abuffersink")
        if inputs == 1:
            self.sources[0].link_to(sink)
        else:
            mix = self.graph.add("amix", f"inputs={inputs}:normalize=0:duration=longest")
            for i, source in enumerate(self.sources):
                source.link_to(mix, 0, i)
            mix.link_to(sink)
        self.sink = sink
        self.graph.configure()

    def mix(self, buffers: list[bytearray], s0: int) -> list:
        for source, buf in zip(self.sources, buffers):
            frame = av.AudioFrame(format="s16", layout="stereo", samples=len(buf) // 4)
            frame.planes[0].update(bytes(buf))
            frame.sample_rate = RATE
            frame.pts = s0
            frame.time_base = fractions.Fraction(1, RATE)
            source.push(frame)
        return self._drain()

    def finish(self) -> list:
        for source in self.sources:
            source.push(None)
        return self._drain()

    def _drain(self) -> list:
        frames = []
        while True:
            try:
                frames.append(self.sink.pull())
            except (av.BlockingIOError, av.EOFError):
                return frames


class _Canvas:
    """A yuv420p picture assembled tile by tile with slice copies (no numpy)."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        probe = av.VideoFrame(width, height, "yuv420p")
        self.strides = [p.line_size for p in probe.planes]
        self.heights = [height, height // 2, height // 2]
        self.black = [bytes([v]) * (s * h) for v, s, h in zip((16, 128, 128), self.strides, self.heights)]
        self.planes = [bytearray(b) for b in self.black]
        self._scaled: dict = {}

    def clear(self) -> None:
        for plane, black in zip(self.planes, self.black):
            plane[:] = black

    def place(self, picture, x: int, y: int, tw: int, th: int) -> None:
        scale = min(tw / picture.width, th / picture.height)
        w, h = max(2, int(picture.width * scale) & ~1), max(2, int(picture.height * scale) & ~1)
        cached = self._scaled.get((x, y))
        if cached is not None and cached[0] is picture:
            scaled = cached[1]  # a frozen or slower source: scale once
        else:
            scaled = picture.reformat(width=w, height=h, format="yuv420p")
            self._scaled[(x, y)] = (picture, scaled)
        x0, y0 = (x + (tw - w) // 2) & ~1, (y + (th - h) // 2) & ~1
        for i, plane in enumerate(scaled.planes):
            div = 1 if i == 0 else 2
            src, sstride = memoryview(plane), plane.line_size
            dst, dstride = self.planes[i], self.strides[i]
            pw, px, py = w // div, x0 // div, y0 // div
            for row in range(h // div):
                d = (py + row) * dstride + px
                s = row * sstride
                dst[d:d + pw] = src[s:s + pw]

    def frame(self):
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        for plane, data in zip(frame.planes, self.planes):
            plane.update(data)
        return frame
