"""Just enough bitstream parsing to describe a stream to the muxer without decoding:
picture size from a VP8 key frame or an H.264 SPS, and the OpusHead a Matroska/WebM
Opus track must carry."""

from __future__ import annotations

import struct
from typing import Iterator, Optional


def vp8_dimensions(frame: bytes) -> Optional[tuple[int, int]]:
    """(width, height) from a VP8 key frame (RFC 6386 9.1), None if not a key frame."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width, height = struct.unpack_from("<HH", frame, 6)
    # The top two bits of each are the upscaling mode, not part of the size.
    return width & 0x3FFF, height & 0x3FFF


def annexb_nal_units(data: bytes) -> Iterator[bytes]:
    """The NAL units of an Annex-B buffer (start codes 00 00 01 / 00 00 00 01)."""
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        starts.append(i + 3)
        i = data.find(b"\x00\x00\x01", i + 3)
    for n, start in enumerate(starts):
        end = starts[n + 1] - 3 if n + 1 < len(starts) else len(data)
        nal = data[start:end]
        # A 4-byte start code leaves its leading zero on the previous unit.
        if n + 1 < len(starts) and nal.endswith(b"\x00"):
            nal = nal.rstrip(b"\x00")
        if nal:
            yield nal


def annexb_to_avcc(data: bytes) -> bytes:
    """Annex-B -> 4-byte length-prefixed NAL units: how Matroska stores H.264.
    (The muxer does this repackaging; tests use it to compare bytes.)"""
    return b"".join(struct.pack(">I", len(nal)) + nal for nal in annexb_nal_units(data))


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.data[self.pos >> 3]  # IndexError on truncated input
            value = (value << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _unescape(nal: bytes) -> bytes:
    # Remove emulation prevention bytes (00 00 03 -> 00 00).
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def h264_sps_dimensions(sps: bytes) -> tuple[int, int]:
    """(width, height) of the cropped picture from an SPS NAL unit (ITU-T H.264
    7.3.2.1.1). Raises ValueError on a malformed SPS."""
    if not sps or sps[0] & 0x1F != 7:
        raise ValueError("not an SPS NAL unit")
    try:
        b = _Bits(_unescape(sps[1:]))
        profile_idc = b.u(8)
        b.u(16)  # constraint flags + level_idc
        b.ue()  # seq_parameter_set_id
        chroma_format_idc, separate_colour_plane = 1, 0
        if profile_idc in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
            chroma_format_idc = b.ue()
            if chroma_format_idc == 3:
                separate_colour_plane = b.u(1)
            b.ue()  # bit_depth_luma_minus8
            b.ue()  # bit_depth_chroma_minus8
            b.u(1)  # qpprime_y_zero_transform_bypass_flag
            if b.u(1):  # seq_scaling_matrix_present_flag
                for i in range(8 if chroma_format_idc != 3 else 12):
                    if b.u(1):
                        size, last, nxt = (16 if i < 6 else 64), 8, 8
                        for _ in range(size):
                            if nxt:
                                nxt = (last + b.se() + 256) % 256
                            last = nxt or last
        b.ue()  # log2_max_frame_num_minus4
        poc_type = b.ue()
        if poc_type == 0:
            b.ue()
        elif poc_type == 1:
            b.u(1)
            b.se()
            b.se()
            for _ in range(b.ue()):
                b.se()
        b.ue()  # max_num_ref_frames
        b.u(1)  # gaps_in_frame_num_value_allowed_flag
        width_mbs = b.ue() + 1
        height_units = b.ue() + 1
        frame_mbs_only = b.u(1)
        if not frame_mbs_only:
            b.u(1)  # mb_adaptive_frame_field_flag
        b.u(1)  # direct_8x8_inference_flag
        width = width_mbs * 16
        height = (2 - frame_mbs_only) * height_units * 16
        if b.u(1):  # frame_cropping_flag
            left, right, top, bottom = b.ue(), b.ue(), b.ue(), b.ue()
            chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
            if chroma_array_type == 0:
                unit_x, unit_y = 1, 2 - frame_mbs_only
            else:
                sub_w = 2 if chroma_format_idc in (1, 2) else 1
                sub_h = 2 if chroma_format_idc == 1 else 1
                unit_x, unit_y = sub_w, sub_h * (2 - frame_mbs_only)
            width -= (left + right) * unit_x
            height -= (top + bottom) * unit_y
    except IndexError:
        raise ValueError("truncated SPS") from None
    if width <= 0 or height <= 0:
        raise ValueError("SPS gives an empty picture")
    return width, height


def h264_dimensions(frame: bytes) -> Optional[tuple[int, int]]:
    """(width, height) from the first SPS in an Annex-B access unit, None if it has none."""
    for nal in annexb_nal_units(frame):
        if nal[0] & 0x1F == 7:
            try:
                return h264_sps_dimensions(nal)
            except ValueError:
                return None
    return None


def video_dimensions(codec: str, frame: bytes) -> Optional[tuple[int, int]]:
    if codec == "vp8":
        return vp8_dimensions(frame)
    if codec == "h264":
        return h264_dimensions(frame)
    return None


def opus_head(channels: int = 2, sample_rate: int = 48000) -> bytes:
    """RFC 7845 5.1 identification header, the CodecPrivate of an Opus track.
    WebRTC Opus is negotiated as 48 kHz stereo; pre-skip 0 keeps the first sample
    on the recorded timeline (a WebRTC stream joined mid-way has no encoder delay
    to hide)."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, 0, sample_rate, 0, 0)
