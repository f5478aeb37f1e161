"""Describe a recorded file by demuxing it (no decoding): per stream codec, packet
count, first/last timestamps and gaps, plus the container tags the recorder writes.
Works on files cut short by a crash (no duration, no cues, truncated last cluster)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO, Optional

import av

# A jump between consecutive packets of one stream larger than this is reported as
# a gap (the recorder uses the same threshold).
GAP_REPORT = 0.5
_DEFAULT_FRAME = {"video": 1 / 30, "audio": 0.02}


@dataclass
class StreamProbe:
    index: int
    kind: str
    codec: str
    frames: int = 0
    first: Optional[float] = None  # seconds, container time
    last: Optional[float] = None
    last_step: Optional[float] = None
    width: Optional[int] = None
    height: Optional[int] = None
    sample_rate: Optional[int] = None
    channels: Optional[int] = None
    tags: dict[str, str] = field(default_factory=dict)
    gaps: list[list[float]] = field(default_factory=list)

    @property
    def end(self) -> Optional[float]:
        if self.last is None:
            return None
        step = self.last_step if self.last_step and 0 < self.last_step <= 0.25 else _DEFAULT_FRAME.get(self.kind, 0.02)
        return self.last + step


@dataclass
class FileProbe:
    format: str
    tags: dict[str, str]
    streams: list[StreamProbe]
    error: Optional[str] = None  # demuxing stopped early (corrupt tail)
    # The muxer wrote its trailer (duration, cues): the file was closed properly.
    finalized: bool = False

    @property
    def duration(self) -> float:
        ends = [s.end for s in self.streams if s.end is not None]
        return max(ends) if ends else 0.0

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.streams)


def probe(source: BinaryIO | str) -> FileProbe:
    """Demux every packet of `source` (a path or a readable binary stream).
    Raises av.FFmpegError if the header itself is unreadable."""
    with av.open(source, "r") as container:
        streams: list[StreamProbe] = []
        for s in container.streams:
            sp = StreamProbe(index=s.index, kind=s.type, codec=s.codec_context.name if s.codec_context else "?")
            sp.tags = dict(s.metadata)
            if s.type == "video":
                sp.width, sp.height = s.codec_context.width or None, s.codec_context.height or None
            elif s.type == "audio":
                sp.sample_rate = s.codec_context.sample_rate or None
                sp.channels = s.codec_context.channels or None
            streams.append(sp)
        error = None
        try:
            for packet in container.demux():
                if packet.pts is None or packet.size == 0:
                    continue
                sp = streams[packet.stream.index]
                t = float(packet.pts * packet.time_base)
                sp.frames += 1
                if sp.first is None:
                    sp.first = t
                elif sp.last is not None:
                    step = t - sp.last
                    if step > GAP_REPORT:
                        sp.gaps.append([round(sp.last + (sp.last_step or 0), 3), round(t, 3)])
                    else:
                        sp.last_step = step
                sp.last = t
        except av.FFmpegError as exc:  # a torn last cluster: keep what came before
            error = f"{type(exc).__name__}: {exc}"
        return FileProbe(
            format=container.format.name,
            tags=dict(container.metadata),
            streams=streams,
            error=error,
            finalized=container.duration is not None,
        )


def decodable_seconds(source: BinaryIO | str, kind: str = "video") -> tuple[int, float]:
    """Decode every frame of the first `kind` stream: (frames decoded, seconds from
    the first decoded frame to the end of the last). Proves a file really plays."""
    with av.open(source, "r") as container:
        streams = [s for s in container.streams if s.type == kind]
        if not streams:
            return 0, 0.0
        stream = streams[0]
        count, first, last = 0, None, None
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * stream.time_base)
                first = t if first is None else first
                last = t
                count += 1
        except av.FFmpegError:
            pass
        if first is None or last is None:
            return 0, 0.0
        return count, last - first + _DEFAULT_FRAME.get(kind, 0.02)
