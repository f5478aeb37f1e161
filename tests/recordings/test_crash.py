"""Crash safety: a real server process (Room + aiortc publisher + recorder) is
SIGKILLed mid-recording; what it leaves must play, and recover() must finalise it."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import av

from recordings import INTERRUPTED, DirectoryStore, recover, verify_recording
from recordings.probe import decodable_seconds, probe

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("crash_child.py")
SESSION = "case-11/s1"
RECORD_FOR = 6.0


def packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux() if p.size]


def test_sigkill_mid_recording_leaves_playable_files_and_recover_finalises_them(tmp_path, signing_key):
    root = tmp_path / "recordings"
    with open(tmp_path / "child.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(root), SESSION],
            cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True,
        )
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, "child never started recording: " + (tmp_path / "child.log").read_text()
            json.loads(proc.stdout.readline())["recording"]
            time.sleep(RECORD_FOR)
            killed_at = time.time()
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    store = DirectoryStore(root)
    assert store.list(SESSION) == [f"{SESSION}/alice-1.webm"]
    path = store.path(f"{SESSION}/alice-1.webm")

    # As the dead process left it: no trailer, yet it decodes up to near the kill.
    left = probe(str(path))
    recorded = killed_at - float(left.tags["MEDIATION_WALL_START"])
    assert recorded > RECORD_FOR - 0.5
    for kind in ("video", "audio"):
        frames, seconds = decodable_seconds(str(path), kind)
        assert seconds >= 0.9 * recorded, (kind, seconds, recorded)
    before = packets(path)

    manifest = recover(store, SESSION, signing_key=signing_key)
    assert manifest.status == INTERRUPTED
    (f,) = manifest.files
    assert (f.participant_id, f.name, f.role, f.segment) == ("alice", "Alice", "party", 1)
    assert f.playable and f.end_reason == "interrupted"
    assert f.duration >= 0.9 * recorded
    assert {s.kind: s.codec for s in f.streams} == {"video": "vp8", "audio": "opus"}
    assert all(s.frames > 0 for s in f.streams)
    # Finalised by stream copy: same packets, now with a duration and an index.
    assert packets(path) == before
    with av.open(str(path)) as container:
        assert container.duration and abs(container.duration / 1e6 - f.duration) < 0.1
    # Signed and saved: verifiable, and a second recover() returns the same manifest.
    assert verify_recording(store, SESSION, signing_key.public_key()) == []
    assert recover(store, SESSION).to_dict() == manifest.to_dict()


def test_recover_leaves_finished_files_untouched(two_party, two_party_copy):
    # A recorder that finished its files but died before saving the manifest.
    manifest = recover(two_party_copy, "case-7/session-1")
    assert manifest.status == INTERRUPTED
    original = {f.key: f for f in two_party.manifest.files}
    assert {f.key for f in manifest.files} == set(original)
    for f in manifest.files:
        o = original[f.key]
        assert (f.sha256, f.size) == (o.sha256, o.size)  # not rewritten
        assert (f.participant_id, f.name, f.role) == (o.participant_id, o.name, o.role)
        assert abs(f.offset - o.offset) < 0.002 and abs(f.duration - o.duration) < 0.05
        assert {s.kind: s.frames for s in f.streams} == {s.kind: s.frames for s in o.streams}
