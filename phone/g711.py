"""G.711 μ-law and A-law (ITU-T G.711) with numpy tables: decode is one lookup per sample, encode
one lookup in a 64 Ki table of all int16 values (Python's audioop is deprecated)."""
from __future__ import annotations

import numpy as np

from phone.sdp import PCMA, PCMU


def _ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, np.where(seg == 1, t + 0x108, (t + 0x108) << np.maximum(seg - 1, 0)))
    return np.where(a & 0x80, t, -t).astype(np.int16)


def _encode_table(decode: np.ndarray) -> np.ndarray:
    """For every int16 value, the code whose decoded value is nearest (exact G.711 quantisation)."""
    order = np.argsort(decode, kind="stable")
    values = decode[order].astype(np.int32)
    x = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)  # by uint16 index
    i = np.clip(np.searchsorted(values, x), 1, len(values) - 1)
    nearer_low = (x - values[i - 1]) <= (values[i] - x)
    return order[np.where(nearer_low, i - 1, i)].astype(np.uint8)


DECODE = {PCMU: _ulaw_decode_table(), PCMA: _alaw_decode_table()}
ENCODE = {pt: _encode_table(table) for pt, table in DECODE.items()}


def decode(payload: bytes, pt: int) -> np.ndarray:
    return DECODE[pt][np.frombuffer(payload, dtype=np.uint8)]


def encode(samples: np.ndarray, pt: int) -> bytes:
    return ENCODE[pt][samples.astype(np.int16).view(np.uint16)].tobytes()
