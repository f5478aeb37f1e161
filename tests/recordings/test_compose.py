"""Offline compose: one grid video with mixed audio on the manifest's timeline."""

from __future__ import annotations

import av
import pytest

from recordings import compose, save_signed_manifest, sign_manifest
from recordings.probe import decodable_seconds

from .conftest import SESSION, bright_fraction


def test_compose_renders_a_playable_grid_on_the_session_timeline(two_party, two_party_copy, signing_key, tmp_path):
    store = two_party_copy
    save_signed_manifest(store, sign_manifest(two_party.manifest, signing_key))
    manifest = two_party.manifest
    expected = max(f.end for f in manifest.files)
    seen: list[float] = []
    out = tmp_path / "grid.mp4"

    result = compose(store, SESSION, out, progress=seen.append)

    assert result.participants == ["mediator", "alice"]  # by first appearance
    assert (result.width, result.height) == (640, 180)  # 2 tiles of 320x180
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) >= 3
    with av.open(str(out)) as container:
        assert {s.type for s in container.streams} == {"video", "audio"}
        assert abs(container.duration / 1e6 - expected) < 0.3
    frames, seconds = decodable_seconds(str(out), "video")
    assert abs(seconds - expected) < 0.3 and frames == pytest.approx(expected * 15, abs=3)
    assert abs(decodable_seconds(str(out), "audio")[1] - expected) < 0.3
    # The mixed audio carries the participants' tone (not silence).
    resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
    peak = 0
    with av.open(str(out)) as container:
        for frame in container.decode(audio=0):
            for pcm in resampler.resample(frame):
                samples = memoryview(bytes(pcm.planes[0])[: pcm.samples * 2]).cast("h")
                peak = max(peak, max(samples), -min(samples))
    assert peak > 4000

    # Alice's tile (right) stays black until her video starts, ~0.7 s after the
    # mediator's (left).
    def video_start(pid: str) -> float:
        f = next(f for f in manifest.files if f.participant_id == pid)
        return f.offset + next(s for s in f.streams if s.kind == "video").offset

    early_t, late_t = video_start("mediator") + 0.2, video_start("alice") + 0.3
    assert early_t < video_start("alice") - 0.1
    with av.open(str(out)) as container:
        pictures = {round(float(f.pts * f.time_base), 3): f for f in container.decode(video=0)}
    early = pictures[min(t for t in pictures if t >= early_t)]
    late = pictures[min(t for t in pictures if t >= late_t)]
    # (160x120 pictures are letterboxed to 240x180 in the middle of each tile)
    assert bright_fraction(early, 40, 280) > 0.1 and bright_fraction(early, 360, 600) == 0
    assert bright_fraction(late, 360, 600) > 0.1


def test_compose_refuses_bad_input(two_party, two_party_copy, tmp_path):
    with pytest.raises(ValueError, match="output must end"):
        compose(two_party_copy, SESSION, tmp_path / "grid.avi")
    with pytest.raises(FileNotFoundError, match="no manifest"):
        compose(two_party_copy, SESSION, tmp_path / "grid.mp4")
    with pytest.raises(ValueError, match="tile"):
        compose(two_party_copy, SESSION, tmp_path / "grid.mp4", tile=(4, 4), manifest=two_party.manifest)
