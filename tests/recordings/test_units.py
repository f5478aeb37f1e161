"""Pure units: storage keys, bitstream parsing, the timestamp mapping."""

from __future__ import annotations

import fractions

import av
import pytest

from recordings import DirectoryStore, check_key
from recordings.bitstream import annexb_nal_units, h264_dimensions, opus_head, vp8_dimensions
from recordings.recorder import _Stream
from rooms import EncodedFrame


# ----------------------------------------------------------------------------- storage


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "..", ".hidden/x", "a/b c", "ä", "a/" + "x" * 129])
def test_bad_keys_are_refused(key, tmp_path):
    with pytest.raises(ValueError):
        check_key(key)
    with pytest.raises(ValueError):
        DirectoryStore(tmp_path).path(key)


def test_directory_store_round_trip(tmp_path):
    store = DirectoryStore(tmp_path)
    with store.open_write("s/a-1.webm") as f:
        f.write(b"abc")
    store.finalize("s/a-1.webm")
    with pytest.raises(FileExistsError):  # recordings are never overwritten
        store.open_write("s/a-1.webm")
    store.put_bytes("s/manifest.json", b"{}")
    assert store.list("s") == ["s/a-1.webm", "s/manifest.json"]
    assert store.size("s/a-1.webm") == 3
    assert store.sha256("s/a-1.webm") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    with store.open_read("s/a-1.webm") as f:
        assert f.read() == b"abc"
    store.rename("s/manifest.json", "s/b.json")
    assert store.get_bytes("s/b.json") == b"{}" and not store.exists("s/manifest.json")
    store.delete("s/a-1.webm")
    store.delete("s/a-1.webm")  # idempotent
    assert store.list("s") == ["s/b.json"] and store.list("nothing") == []


# ----------------------------------------------------------------------------- bitstream


def test_vp8_and_h264_picture_sizes_come_from_the_bitstream(media):
    assert vp8_dimensions(media.vp8[0]) == (160, 120)
    assert vp8_dimensions(media.vp8[1]) is None  # inter frame
    assert h264_dimensions(media.h264[0]) == (160, 120)
    assert h264_dimensions(media.h264[1]) is None  # no SPS in an inter frame


@pytest.mark.parametrize("size,profile", [((200, 90), "baseline"), ((1280, 720), "high"), ((1920, 1080), "main")])
def test_h264_sps_cropping_and_profiles(size, profile):
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height = size
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, 30)
    codec.options = {"profile": profile, "preset": "ultrafast"}
    frame = av.VideoFrame(*size, "yuv420p")
    frame.pts = 0
    data = b"".join(bytes(p) for p in [*codec.encode(frame), *codec.encode(None)])
    assert h264_dimensions(data) == size
    assert [n[0] & 0x1F for n in annexb_nal_units(data)][:2] == [7, 8]  # SPS, PPS first


def test_opus_head_is_rfc7845():
    head = opus_head()
    assert head[:8] == b"OpusHead" and head[8] == 1 and head[9] == 2 and len(head) == 19
    assert int.from_bytes(head[12:16], "little") == 48000


# ----------------------------------------------------------------------------- timestamp mapping


def feed(stream: _Stream, frames: list[tuple[float, float]], rate: int = 90000) -> list[float]:
    """frames: (arrival seconds, rtp seconds) -> segment seconds written (in order)."""
    out = []
    for arrival, rtp in frames:
        frame = EncodedFrame(b"x", round(rtp * rate), rate, "video/vp8", False, 1000.0 + arrival)
        out += [ms / 1000 for ms, _ in stream.feed(frame, 1000.0)]
    out += [ms / 1000 for ms, _ in stream.release()]
    return out


def test_a_delayed_first_frame_is_corrected_by_the_next_ones():
    # The keyframe came 80 ms late; the frames after it show the real delay.
    frames = [(0.08, 0.0)] + [(i / 30, i / 30) for i in range(1, 60)]
    times = feed(_Stream("p", "video", "vp8"), frames)
    assert times == pytest.approx([i / 30 for i in range(60)], abs=0.002)


def test_a_path_that_gets_faster_later_pulls_the_anchor_earlier():
    frames = [(i / 30 + 0.2, i / 30) for i in range(30)] + [(i / 30, i / 30) for i in range(30, 60)]
    times = feed(_Stream("p", "video", "vp8"), frames)
    assert times[:30] == pytest.approx([i / 30 + 0.2 for i in range(30)], abs=0.002)
    assert times[-1] == pytest.approx(59 / 30 + 0.04, abs=0.002)  # within EARLY_TOLERANCE
    assert all(b > a for a, b in zip(times, times[1:]))


def test_slow_catch_up_after_a_stall_keeps_rtp_times():
    # Sender blocked 0.4 s, then catching up at double speed over 0.4 s.
    frames = [(i / 30, i / 30) for i in range(30)]
    frames += [(1.0 + 0.4 + k / 60, (30 + k) / 30) for k in range(24)]
    frames += [((54 + k) / 30 + 0.005, (54 + k) / 30) for k in range(30)]
    times = feed(_Stream("p", "video", "vp8"), frames)
    assert times == pytest.approx([i / 30 for i in range(84)], abs=0.006)


def test_steady_stream_follows_rtp_spacing_despite_arrival_jitter():
    jitter = [0, 0.03, 0.01, 0.05, 0.0, 0.02]
    times = feed(_Stream("p", "video", "vp8"), [(i / 30 + jitter[i % 6], 5 + i / 30) for i in range(90)])
    assert times == pytest.approx([i / 30 for i in range(90)], abs=0.002)


def test_stall_then_burst_keeps_rtp_times():
    # 20 frames, then nothing for 0.6 s, then the backlog in one burst, then live.
    frames = [(i / 30, i / 30) for i in range(20)]
    frames += [(0.6 + 20 / 30 + k * 0.001, (20 + k) / 30) for k in range(18)]
    frames += [((38 + k) / 30 + 0.01, (38 + k) / 30) for k in range(30)]
    times = feed(_Stream("p", "video", "vp8"), frames)
    assert times == pytest.approx([i / 30 for i in range(68)], abs=0.002)


def test_sender_clock_that_stood_still_leaves_a_gap_not_squeezed_media():
    # RTP does not advance across 1.5 s of silence: follow arrival, report the gap.
    frames = [(i / 30, i / 30) for i in range(30)]
    frames += [(1.0 + 1.5 + k / 30, (30 + k) / 30) for k in range(30)]
    stream = _Stream("p", "video", "vp8")
    times = feed(stream, frames)
    assert times[:30] == pytest.approx([i / 30 for i in range(30)], abs=0.002)
    assert times[30:] == pytest.approx([2.5 + k / 30 for k in range(30)], abs=0.002)
    assert len(stream.gaps) == 1 and stream.gaps[0] == pytest.approx([1.0, 2.5], abs=0.002)


def test_rtp_jump_ahead_is_pulled_back_to_arrival():
    frames = [(i / 30, i / 30) for i in range(30)] + [((30 + k) / 30, 100 + k / 30) for k in range(30)]
    times = feed(_Stream("p", "video", "vp8"), frames)
    assert times[30] == pytest.approx(1.0 + 0.04, abs=0.002)  # within EARLY_TOLERANCE of arrival
    assert all(b > a for a, b in zip(times, times[1:]))
