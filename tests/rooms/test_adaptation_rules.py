"""The rules of per-viewer adaptation, as properties: the VP8 temporal-layer parser on any bytes,
and the allocation of a viewer's estimate among its videos (rooms/adaptation.py)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rooms.adaptation import AUDIO_RESERVE, ViewerLink
from rooms.frames import vp8_temporal_id
from rooms.media import FULL, PAUSED, REDUCED


@given(st.binary(max_size=12))
def test_the_temporal_layer_parser_takes_any_bytes(payload):
    tid = vp8_temporal_id(payload)
    assert tid is None or 0 <= tid <= 3


@given(st.integers(0, 3), st.booleans(), st.booleans(), st.booleans())
def test_the_temporal_layer_is_read_after_picture_id_and_tl0picidx(tid, long_picture_id, has_tl0, keyidx):
    ext = 0x80 | 0x20 | (0x40 if has_tl0 else 0) | (0x10 if keyidx else 0)
    payload = bytes([0x90, ext])
    payload += bytes([0x80 | 0x12, 0x34]) if long_picture_id else bytes([0x12])
    if has_tl0:
        payload += bytes([0x07])
    payload += bytes([(tid << 6) | 0x20 | 0x03, 0x9D])
    assert vp8_temporal_id(payload) == tid


def test_no_extension_or_no_tid_means_no_layer():
    assert vp8_temporal_id(bytes([0x10, 0x9D, 0x01])) is None           # X bit clear
    assert vp8_temporal_id(bytes([0x90, 0x80, 0x12, 0x00])) is None     # I only
    assert vp8_temporal_id(bytes([0x90, 0x90, 0x12, 0x01])) is None     # K without T


videos = st.lists(st.tuples(st.floats(50_000, 2_000_000), st.booleans()), min_size=0, max_size=5)


@settings(max_examples=200)
@given(st.floats(48_000, 3_000_000), st.lists(st.floats(0, 80_000), max_size=4), videos)
def test_what_a_viewer_is_given_fits_its_estimate(estimate, audio, streams):
    link = ViewerLink()
    link.estimate = estimate
    table = [(f"p{i}", full, full * 0.5 if layered else None) for i, (full, layered) in enumerate(streams)]
    levels = link.allocate(0.0, audio, table)
    assert set(levels) == {pid for pid, _, _ in table}
    assert set(levels.values()) <= {FULL, REDUCED, PAUSED}
    used = sum(full if levels[pid] == FULL else (reduced if levels[pid] == REDUCED else 0.0)
               for pid, full, reduced in table)
    assert used <= max(estimate - AUDIO_RESERVE * sum(audio), 0.0) + 1e-6
    for pid, _, reduced in table:  # reduced only where there is a layer to reduce to
        assert levels[pid] != REDUCED or reduced is not None


@given(videos)
def test_no_limit_means_everything_in_full_and_audio_only_means_no_video(streams):
    table = [(f"p{i}", full, None) for i, (full, _) in enumerate(streams)]
    link = ViewerLink()
    assert all(v == FULL for v in link.allocate(0.0, [40_000], table).values())
    link.audio_only = True
    assert all(v == PAUSED for v in link.allocate(0.0, [40_000], table).values())


def test_the_mediator_first_and_going_up_waits():
    link = ViewerLink()
    link.estimate = 300_000
    table = [("mediator", 400_000, 200_000), ("party", 400_000, 200_000)]
    levels = link.allocate(0.0, [32_000], table)
    assert levels == {"mediator": REDUCED, "party": PAUSED}
    link.levels = levels
    link.estimate = 2_000_000  # the link widened: up only after it fitted for a while
    assert link.allocate(10.0, [32_000], table) == levels
    assert link.allocate(10.5, [32_000], table) == {"mediator": FULL, "party": FULL}
