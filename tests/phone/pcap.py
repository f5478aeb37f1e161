"""A pcap of a caller's RTP for SIPp's play_pcap_audio: silence, RFC 4733 keys, then a G.711 tone."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from phone import g711, rtp
from tests.phone.caller import tone

EVENT_PT = 101


def _frame(payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 40000, 40000, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes([127, 0, 0, 1]),
                     bytes([127, 0, 0, 1]))
    return b"\x00" * 12 + b"\x08\x00" + ip + udp


def write(path: Path, keys: str, *, freq: float, seconds: float, pt: int = 0, lead: float = 1.0) -> None:
    packets: list[tuple[float, bytes]] = []
    seq, ts, t = 1, 1000, 0.0
    ssrc = 0x4733

    def audio(samples: np.ndarray) -> None:
        nonlocal seq, ts, t
        for i in range(0, len(samples) - rtp.FRAME + 1, rtp.FRAME):
            packets.append((t, rtp.build(pt, seq, ts, ssrc, g711.encode(samples[i:i + rtp.FRAME], pt))))
            seq, ts, t = seq + 1, ts + rtp.FRAME, t + 0.02

    audio(np.zeros(int(8000 * lead), np.int16))
    for key in keys:
        code = rtp.EVENT_KEYS.index(key)
        for i in range(6):
            end = i >= 3
            payload = struct.pack("!BBH", code, (0x80 if end else 0) | 10, rtp.FRAME * min(i + 1, 4))
            packets.append((t, rtp.build(EVENT_PT, seq, ts, ssrc, payload, marker=i == 0)))
            seq, t = seq + 1, t + 0.02
        ts += rtp.FRAME * 4
        audio(np.zeros(rtp.FRAME * 5, np.int16))   # 100 ms between keys
    audio(tone(freq, int(8000 * seconds)))
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for at, data in packets:
        frame = _frame(data)
        sec, usec = int(at), int(round((at - int(at)) * 1e6))
        out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
