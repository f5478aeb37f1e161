"""After a crash: find the files a killed recorder left, make them whole, and
describe them in a manifest marked "interrupted".

Blocking (file I/O, demuxing); from async code run it with asyncio.to_thread. Call
it only when no recorder is live for the session (e.g. at server start).
"""

from __future__ import annotations

import logging
import time
from typing import Optional

import av
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .manifest import (
    INTERRUPTED,
    MEDIA_SUFFIXES,
    FileEntry,
    Manifest,
    StreamEntry,
    _r,
    iso_time,
    load_manifest,
    manifest_key,
    save_signed_manifest,
    sign_manifest,
)
from .probe import probe
from .recorder import TAG
from .storage import RecordingStore, check_key

logger = logging.getLogger(__name__)


def recover(
    store: RecordingStore,
    session_key: str,
    *,
    signing_key: Optional[Ed25519PrivateKey] = None,
    remux: bool = True,
) -> Manifest:
    """The manifest of a session whose recorder died.

    If the session already has a manifest (the recorder stopped normally, or an
    earlier recovery saved one) that manifest is returned unchanged. Otherwise every
    media file under the session is probed (codecs, frame counts, duration; the
    wall-clock anchors come from the tags the recorder wrote into each file) and,
    with `remux`, each file that was never closed is rewritten by stream copy so it
    gets a proper duration and seek index (packets stay byte-identical; a torn last
    cluster is dropped); files the recorder had finished stay as they are. Sizes and
    hashes are of the files as they are left. With `signing_key` the manifest is
    signed and saved as <session_key>/manifest.json.
    """
    check_key(session_key)
    if store.exists(manifest_key(session_key)):
        return load_manifest(store, session_key)
    found: list[tuple[FileEntry, Optional[float]]] = []  # (entry, its wall-clock start)
    session_starts: list[float] = []
    for key in store.list(session_key):
        if not key.endswith(MEDIA_SUFFIXES):
            continue
        if store.size(key) == 0:
            store.delete(key)  # created, never written: nothing to keep
            continue
        entry, wall_start, session_start = _recover_file(store, key, remux)
        if session_start is not None:
            session_starts.append(session_start)
        found.append((entry, wall_start))
    # The recorder may have moved a file's time zero a little before the session
    # start it had tagged (anchoring on its least-delayed first frames).
    starts = session_starts + [wall for _, wall in found if wall is not None]
    session_start = min(starts) if starts else time.time()
    entries = []
    for entry, wall_start in found:
        entry.offset = _r(wall_start - session_start) if wall_start is not None else 0.0
        entries.append(entry)
    ends = [session_start + e.offset + e.duration for e in entries if e.playable]
    manifest = Manifest(
        session_key=session_key,
        status=INTERRUPTED,
        started_at=iso_time(session_start),
        stopped_at=iso_time(max(ends) if ends else session_start),
        files=sorted(entries, key=lambda f: (f.offset, f.participant_id, f.segment)),
    )
    if signing_key is not None:
        save_signed_manifest(store, sign_manifest(manifest, signing_key))
    return manifest


def _float(value: Optional[str]) -> Optional[float]:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _int(value: Optional[str]) -> int:
    return int(value) if value and value.isdigit() else 0


def _recover_file(
    store: RecordingStore, key: str, remux: bool
) -> tuple[FileEntry, Optional[float], Optional[float]]:
    """(entry with offset 0, the file's wall-clock start, the session start tagged)."""
    name = key.rsplit("/", 1)[-1]
    stem, ext = name.rsplit(".", 1)
    slug, _, n = stem.rpartition("-")
    try:
        with store.open_read(key) as f:
            info = probe(f)
    except (av.FFmpegError, OSError) as exc:
        logger.warning("recovery: %s is unreadable: %s", key, exc)
        return (
            FileEntry(
                key=key, participant_id=slug or stem, name=None, role=None, segment=_int(n),
                container="matroska" if ext == "mkv" else "webm", started_at=iso_time(0), offset=0.0, duration=0.0,
                size=store.size(key), sha256=store.sha256(key), streams=[], end_reason="interrupted",
                playable=False, error=f"unreadable: {exc}",
            ),
            None,
            None,
        )
    if remux and info.frames and not info.finalized:
        # Only files the dead process never closed: a segment it had finished (and
        # maybe reported with its hash) stays byte for byte as it was.
        try:
            _remux(store, key)
            with store.open_read(key) as f:
                info = probe(f)
        except (av.FFmpegError, OSError) as exc:
            logger.warning("recovery: could not remux %s (%s); keeping it as it is", key, exc)
    tags = info.tags
    wall = _float(tags.get(f"{TAG}WALL_START"))
    streams = [
        StreamEntry(
            kind=s.kind,
            codec=s.codec,
            frames=s.frames,
            offset=_r(s.first or 0.0),
            duration=_r((s.end or 0.0) - (s.first or 0.0)),
            producer_id=s.tags.get(f"{TAG}PRODUCER"),
            width=s.width,
            height=s.height,
            sample_rate=s.sample_rate,
            channels=s.channels,
            gaps=s.gaps,
        )
        for s in info.streams
        if s.kind in ("audio", "video")
    ]
    entry = FileEntry(
        key=key,
        participant_id=tags.get(f"{TAG}PARTICIPANT", slug or stem),
        name=tags.get(f"{TAG}NAME"),
        role=tags.get(f"{TAG}ROLE"),
        track=tags.get(f"{TAG}TRACK"),
        segment=_int(tags.get(f"{TAG}SEGMENT", n)),
        container="matroska" if ext == "mkv" else "webm",
        started_at=iso_time(wall or 0),
        offset=0.0,  # recover() makes it session-relative
        duration=_r(info.duration),
        size=store.size(key),
        sha256=store.sha256(key),
        streams=streams,
        end_reason="interrupted",
        playable=info.frames > 0,
        error=info.error,
    )
    return entry, wall, _float(tags.get(f"{TAG}SESSION_START"))


def _own_tags(tags: dict) -> dict:
    # The recorder's tags, not the muxer's (ENCODER, DURATION are rewritten).
    return {k: v for k, v in tags.items() if k.startswith(TAG) or k == "DATE_RECORDED"}


def _remux(store: RecordingStore, key: str) -> None:
    """Stream-copy `key` into a finished container (duration, cues) and replace it."""
    tmp = key + ".tmp"
    store.delete(tmp)
    ext = key.rsplit(".", 1)[-1]
    with store.open_read(key) as src_file, av.open(src_file, "r") as src:
        out_file = store.open_write(tmp)
        try:
            with av.open(out_file, "w", format="matroska" if ext == "mkv" else "webm") as out:
                out.metadata.update(_own_tags(src.metadata))
                mapping = {}
                for s in src.streams:
                    if s.type not in ("audio", "video"):
                        continue
                    o = out.add_stream_from_template(s, opaque=True)
                    o.metadata.update(_own_tags(s.metadata))
                    mapping[s.index] = o
                try:
                    for packet in src.demux():
                        if packet.pts is None or packet.size == 0 or packet.stream.index not in mapping:
                            continue
                        packet.stream = mapping[packet.stream.index]
                        out.mux(packet)
                except av.FFmpegError:
                    pass  # torn tail: keep every complete packet before it
        finally:
            out_file.close()
    store.finalize(tmp)
    store.rename(tmp, key)
