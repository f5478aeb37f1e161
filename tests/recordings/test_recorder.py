"""The live recorder with real aiortc peers: byte-identical remux, wall-clock
alignment, segments with gaps (pause/resume, mute, leave/rejoin), H.264 to .mkv."""

from __future__ import annotations

import asyncio
import time

import av
import pytest

from recordings import DirectoryStore, RecordingError, SessionRecorder, compose
from recordings.bitstream import annexb_to_avcc
from recordings.manifest import parse_iso_time
from recordings.probe import decodable_seconds

from .conftest import SESSION, bright_fraction, join_logged, record_everything


def demux(store: DirectoryStore, key: str) -> dict[str, list[tuple[float, bytes]]]:
    """kind -> [(seconds, packet bytes)] in file order."""
    out: dict[str, list[tuple[float, bytes]]] = {}
    with store.open_read(key) as f, av.open(f) as container:
        for packet in container.demux():
            if packet.size:
                out.setdefault(packet.stream.type, []).append((float(packet.pts * packet.time_base), bytes(packet)))
    return out


# ----------------------------------------------------------------------------- shared recording


def test_remuxed_frames_are_byte_identical_to_the_forwarded_ones(two_party):
    store = DirectoryStore(two_party.root)
    manifest = two_party.manifest
    assert {f.participant_id for f in manifest.files} == {"mediator", "alice"}
    for f in manifest.files:
        assert f.key.endswith(".webm") and f.container == "webm"
        assert f.segment == 1 and f.end_reason == "stopped"
        pub = two_party.publishers[f.participant_id]
        got = demux(store, f.key)
        for kind, sent in (("video", pub.video), ("audio", pub.audio)):
            data = [d for _, d in got[kind]]
            # The recorder was attached before media flowed: the file holds exactly
            # the frames the publisher sent, from its first (key)frame on.
            assert len(data) > (60 if kind == "video" else 100)
            assert data == [d for _, d in sent[: len(data)]], f"{f.key} {kind} differs from what was sent"
            # ...and exactly what the recorder's consumer received.
            stat = next(s for s in two_party.stats if s["participant_id"] == f.participant_id and s["kind"] == kind)
            assert stat["delivered"] == stat["recorded"] == len(data)
            entry = next(s for s in f.streams if s.kind == kind)
            assert entry.frames == len(data)
        assert got["video"][0][1] == two_party.publishers["mediator"].video[0][1]  # a keyframe


def test_participants_line_up_within_100ms_on_the_manifest_timeline(two_party):
    store = DirectoryStore(two_party.root)
    manifest = two_party.manifest
    session_start = parse_iso_time(manifest.started_at)
    firsts = {}
    for f in manifest.files:
        assert f.started_at  # each file carries its own wall-clock anchor
        pub = two_party.publishers[f.participant_id]
        got = demux(store, f.key)
        for kind, sent in (("video", pub.video), ("audio", pub.audio)):
            placed = [session_start + f.offset + t for t, _ in got[kind]]
            # The first frame sits where it was sent, on the shared wall clock.
            assert abs(placed[0] - sent[0][0]) < 0.1, (f.key, kind, placed[0] - sent[0][0])
            # Every later frame sits at its capture time (the publisher's clock:
            # first send + n frame intervals), never later than it was really
            # sent: a sender running late does not shift the timeline.
            interval = 1 / 30 if kind == "video" else 0.02
            for n, (at, (sent_wall, _)) in enumerate(zip(placed, sent)):
                assert abs(at - (sent[0][0] + n * interval)) < 0.1, (f.key, kind, n)
                assert at - sent_wall < 0.1, (f.key, kind, n)
            firsts[(f.participant_id, kind)] = placed[0]
    # alice started ~0.7 s after the mediator; the manifest says the same.
    for kind in ("video", "audio"):
        recorded = firsts[("alice", kind)] - firsts[("mediator", kind)]
        sent = getattr(two_party.publishers["alice"], kind)[0][0] - getattr(two_party.publishers["mediator"], kind)[0][0]
        assert recorded > 0.5
        assert abs(recorded - sent) < 0.1


def test_a_participant_paused_from_the_start_leaves_no_file(two_party):
    assert not [f for f in two_party.manifest.files if f.participant_id == "carol"]
    assert not [k for k in DirectoryStore(two_party.root).list(SESSION) if "carol" in k]
    carol = [s for s in two_party.stats if s["participant_id"] == "carol"]
    assert carol and all(s["delivered"] > 0 and s["recorded"] == 0 for s in carol)


def test_manifest_describes_every_file(two_party):
    store = DirectoryStore(two_party.root)
    for f in two_party.manifest.files:
        assert f.size == store.size(f.key) and f.sha256 == store.sha256(f.key)
        assert f.name == f.participant_id.title() and f.role in ("mediator", "party")
        assert {s.kind: s.codec for s in f.streams} == {"video": "vp8", "audio": "opus"}
        video = next(s for s in f.streams if s.kind == "video")
        assert (video.width, video.height) == (160, 120)
        frames, seconds = decodable_seconds(str(store.path(f.key)))
        assert frames == video.frames
        assert abs(seconds - f.duration) < 0.1


# ----------------------------------------------------------------------------- segments and gaps


async def test_pause_mute_leave_and_rejoin_give_gaps_not_stretched_media(harness, store):
    room = harness.room
    recorder = SessionRecorder(store, "case-8/s1")
    record_everything(harness, recorder)
    marks = {}

    pub = await join_logged(harness, "alice")
    await asyncio.sleep(1.2)
    marks["pause"] = time.time()
    recorder.pause_participant("alice")
    await asyncio.sleep(1.0)
    marks["resume"] = time.time()
    recorder.resume_participant("alice")
    await asyncio.sleep(1.0)
    room.mute("alice", "video", True)
    marks["mute"] = time.time()
    await asyncio.sleep(1.0)
    room.mute("alice", "video", False)
    marks["unmute"] = time.time()
    await asyncio.sleep(1.0)
    marks["leave"] = time.time()
    await room.leave("alice")
    await harness.clients.pop("alice").close()
    await asyncio.sleep(0.8)
    marks["rejoin"] = time.time()
    await join_logged(harness, "alice")
    await asyncio.sleep(1.2)
    marks["stop"] = time.time()
    manifest = await recorder.stop()

    session_start = parse_iso_time(manifest.started_at)
    files = manifest.files_of("alice")
    assert [f.end_reason for f in files] == ["paused", "producer_closed", "stopped"]
    assert [f.segment for f in files] == [1, 2, 3]
    first_sent = pub.video[0][0]
    spans = [(first_sent, marks["pause"]), (marks["resume"], marks["leave"]), (marks["rejoin"], marks["stop"])]
    for f, (start, end) in zip(files, spans):
        wall_start = session_start + f.offset
        # Each file starts when recording resumed (keyframe / connection delay
        # allowed for) and lasts as long as the wall-clock span it covers.
        assert -0.05 < wall_start - start < 0.6, f.key
        assert abs((wall_start + f.duration) - end) < 0.3, f.key
        for s in f.streams:
            # Frame rate over the covered time (gaps excluded) is the sent rate:
            # nothing stretched or squeezed.
            covered = s.duration - sum(b - a for a, b in s.gaps)
            rate = s.frames / covered
            assert abs(rate - (30 if s.kind == "video" else 50)) < 4, (f.key, s.kind, rate)
    # Gaps between files: the pause and the absence.
    assert files[1].offset - files[0].end > 0.8
    assert files[2].offset - files[1].end > 0.6
    # The mute is a ~1 s gap inside the second file's video, audio continues.
    video = next(s for s in files[1].streams if s.kind == "video")
    audio = next(s for s in files[1].streams if s.kind == "audio")
    assert len(video.gaps) == 1 and not audio.gaps
    gap_start, gap_end = (session_start + files[1].offset + x for x in video.gaps[0])
    assert abs(gap_start - marks["mute"]) < 0.15 and abs(gap_end - marks["unmute"]) < 0.4
    # ...and in the file itself the video timestamps jump over it.
    times = [t for t, _ in demux(store, files[1].key)["video"]]
    jumps = [b - a for a, b in zip(times, times[1:])]
    assert max(jumps) > 0.8 and sorted(jumps)[len(jumps) // 2] == pytest.approx(1 / 30, abs=0.005)
    for f in files:
        assert decodable_seconds(str(store.path(f.key)))[0] > 0

    # Composed on one timeline: black where there is no video (pause, mute,
    # absence), picture elsewhere, and as long as the session.
    out = store.root / "grid.mp4"
    result = compose(store, "case-8/s1", out, manifest=manifest, tile=(160, 120), fps=10)
    assert abs(result.duration - files[2].end) < 0.01
    with av.open(str(out)) as container:
        assert abs(container.duration / 1e6 - result.duration) < 0.3
        pictures = {round(float(f.pts * f.time_base), 1): f for f in container.decode(video=0)}

    def lit(wall: float) -> bool:
        return bright_fraction(pictures[round(wall - session_start, 1)], 0, 160) > 0.1

    assert lit((marks["pause"] + first_sent) / 2)
    assert not lit((marks["pause"] + marks["resume"]) / 2)
    assert lit((marks["resume"] + marks["mute"]) / 2 + 0.2)
    assert not lit((marks["mute"] + marks["unmute"]) / 2)
    assert not lit((marks["leave"] + marks["rejoin"]) / 2)
    assert lit((marks["rejoin"] + marks["stop"]) / 2 + 0.2)


async def test_h264_is_recorded_into_matroska(harness, store):
    recorder = SessionRecorder(store, "case-9/s1")
    record_everything(harness, recorder)
    pub = await join_logged(harness, "dave", h264=True)
    await asyncio.sleep(1.5)
    manifest = await recorder.stop()
    (f,) = manifest.files
    assert f.key == "case-9/s1/dave-1.mkv" and f.container == "matroska"
    video = next(s for s in f.streams if s.kind == "video")
    assert (video.codec, video.width, video.height) == ("h264", 160, 120)
    with store.open_read(f.key) as fh, av.open(fh) as container:
        assert container.format.name.startswith("matroska")
    got = [d for _, d in demux(store, f.key)["video"]]
    # Matroska stores H.264 length-prefixed: the same NAL units, repackaged.
    assert got == [annexb_to_avcc(d) for _, d in pub.video[: len(got)]]
    assert len(got) > 40
    # The test publisher loops 29 inter frames after one keyframe, which a decoder
    # only follows for the first pass (frame_num wraps); the recording decodes that.
    frames, _ = decodable_seconds(str(store.path(f.key)))
    assert frames >= 30


async def test_a_track_added_later_starts_a_new_file_that_has_both(harness, store):
    recorder = SessionRecorder(store, "case-12/s1")
    record_everything(harness, recorder)
    harness.room.join("frank", "Frank", "party", area="main")
    from tests.rooms.clients import Client

    client = harness.clients["frank"] = Client(harness.room, "frank", harness.media)
    await client.publish(video=False)  # microphone only
    await asyncio.sleep(1.5)
    camera_asked = time.time()
    await client.publish(audio=False)  # then the camera (a renegotiation)
    camera_on = time.time()
    await asyncio.sleep(1.5)
    manifest = await recorder.stop()

    first, second = manifest.files
    assert [s.kind for s in first.streams] == ["audio"] and first.end_reason == "tracks_changed"
    assert sorted(s.kind for s in second.streams) == ["audio", "video"] and second.end_reason == "stopped"
    session_start = parse_iso_time(manifest.started_at)
    # The split happens during the renegotiation that added the camera (however long it took).
    assert camera_asked - 0.3 < session_start + first.end < camera_on + 0.3
    # Audio carries on across the split: the second file starts where the first ended.
    assert -0.03 < second.offset - first.end < 0.15
    video = next(s for s in second.streams if s.kind == "video")
    assert (video.width, video.height) == (160, 120) and video.frames > 30


async def test_a_screen_share_is_its_own_file_and_leaves_the_camera_file_whole(harness, store, tmp_path):
    """docs/protocol.md, "Screen sharing": the share is remuxed like any track, into files of its
    own (track "screen"), so starting and stopping it does not cut the sharer's camera file."""
    from aiortc import RTCSessionDescription

    from tests.rooms.clients import EncodedTrack

    from .conftest import log_sends

    recorder = SessionRecorder(store, "case-13/s1")
    record_everything(harness, recorder)
    recorder.pause_participant("hank")  # no consent: not even his share may be written
    pub = await join_logged(harness, "gina")
    await join_logged(harness, "hank")
    harness.room.move("hank", harness.room.create_caucus("Hank alone"))  # one share per area
    await asyncio.sleep(0.8)

    async def share(pid: str, on: bool, transceiver=None):
        client = harness.clients[pid]
        if transceiver is None:
            track = EncodedTrack("video", harness.media.vp8)
            transceiver = client.pub.addTransceiver(track, direction="sendonly")
            client._watch_rtcp(transceiver.sender, track)
            transceiver.sent = []
            log_sends(track, transceiver.sent)
        transceiver.direction = "sendonly" if on else "inactive"
        await client.pub.setLocalDescription(await client.pub.createOffer())
        answer = await harness.room.handle_publish_offer(
            pid, client.pub.localDescription.sdp, "offer", {transceiver.mid: "screen"} if on else None)
        await client.pub.setRemoteDescription(RTCSessionDescription(**answer))
        return transceiver

    gina_screen = await share("gina", True)
    await share("hank", True)
    await asyncio.sleep(1.5)
    await share("gina", False, gina_screen)
    await asyncio.sleep(0.5)
    manifest = await recorder.stop()

    assert {f.participant_id for f in manifest.files} == {"gina"}
    camera = [f for f in manifest.files if f.track is None]
    screen = [f for f in manifest.files if f.track == "screen"]
    assert len(camera) == 1 and len(screen) == 1, [(f.key, f.track) for f in manifest.files]
    (camera,), (screen,) = camera, screen
    assert camera.key == "case-13/s1/gina-1.webm" and camera.end_reason == "stopped"
    assert sorted(s.kind for s in camera.streams) == ["audio", "video"]
    assert screen.key == "case-13/s1/gina-screen-1.webm" and screen.end_reason == "producer_closed"
    assert [s.kind for s in screen.streams] == ["video"] and screen.streams[0].frames > 20
    # The share's frames are the very bytes its track sent, as for a camera.
    got = [d for _, d in demux(store, screen.key)["video"]]
    sent = [d for _, d in gina_screen.sent]
    start = sent.index(got[0])
    assert got == sent[start:start + len(got)]
    cam_got = [d for _, d in demux(store, camera.key)["video"]]
    cam_sent = [d for _, d in pub.video]
    cam_start = cam_sent.index(cam_got[0])
    assert cam_got == cam_sent[cam_start:cam_start + len(cam_got)]  # one file, no cut at the share
    # The file says what it is, for recovery after a crash too.
    with store.open_read(screen.key) as fh, av.open(fh) as container:
        assert container.metadata.get("MEDIATION_TRACK") == "screen"
    # The export gives the share a tile of its own beside the camera's.
    result = compose(store, "case-13/s1", tmp_path / "out.webm", tile=(160, 90), fps=5, manifest=manifest)
    assert (result.width, result.height) == (320, 90) and result.participants == ["gina"]


# ----------------------------------------------------------------------------- bad input


async def test_bad_calls_are_refused_clearly(harness, store):
    with pytest.raises(ValueError):
        SessionRecorder(store, "../escape")
    recorder = SessionRecorder(store, "case-10/s1")
    with pytest.raises(ValueError):
        recorder.pause_participant("")
    await join_logged(harness, "erin")
    producer = harness.room.producers()[0]
    recorder.record_producer(harness.room, producer)
    with pytest.raises(RecordingError, match="already being recorded"):
        recorder.record_producer(harness.room, producer)
    assert recorder.stop_producer(producer.id) is True
    assert recorder.stop_producer(producer.id) is False
    await recorder.stop()
    with pytest.raises(RecordingError, match="stopped"):
        recorder.record_producer(harness.room, producer)
    with pytest.raises(RecordingError):
        await recorder.stop()


class FullDisk(DirectoryStore):
    def open_write(self, key):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")


async def test_a_store_that_fails_is_reported_not_fatal(harness, tmp_path):
    recorder = SessionRecorder(FullDisk(tmp_path / "full"), "case-13/s1")
    record_everything(harness, recorder)
    await join_logged(harness, "gina")
    await asyncio.sleep(1.2)
    manifest = await recorder.stop()
    assert manifest.files == []
    (error,) = manifest.errors
    assert "case-13/s1/gina-1.webm" in error and "No space left" in error
    # The session itself went on: the room still forwarded gina's media.
    assert all(p.frames_in > 30 for p in harness.room.producers())
