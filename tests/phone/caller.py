"""A telephone caller for the tests: plain asyncio UDP, SIP (INVITE, ACK, BYE) and G.711 RTP with
RFC 4733 keys; it records what it hears, so a test can measure the room's mix by frequency."""
from __future__ import annotations

import asyncio
import math
import random
import struct
import uuid

import numpy as np

from phone import g711, rtp, sdp, sip

EVENT_PT = 101


def dominant(samples: np.ndarray, rate: int = 8000) -> float:
    """The strongest frequency of a stretch of samples (Hz)."""
    x = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(x))
    spectrum[:3] = 0  # no DC
    return float(np.argmax(spectrum) * rate / len(samples))


def level_at(samples: np.ndarray, freq: float, rate: int = 8000) -> float:
    """The amplitude of one frequency in the samples (Goertzel-like, by correlation)."""
    t = np.arange(len(samples)) / rate
    x = samples.astype(np.float64)
    return float(2 * abs(np.dot(x, np.exp(-2j * math.pi * freq * t))) / len(samples))


def tone(freq: float, n: int, start: int = 0, amplitude: int = 8000) -> np.ndarray:
    t = (np.arange(n) + start) / 8000
    return (amplitude * np.sin(2 * math.pi * freq * t)).astype(np.int16)


class _Sock(asyncio.DatagramProtocol):
    def __init__(self, on):
        self.on = on

    def datagram_received(self, data, addr):
        self.on(data, addr)


class Caller:
    def __init__(self, server: tuple[str, int], number: str = "13900001234"):
        self.server = server
        self.number = number
        self.call_id = uuid.uuid4().hex
        self.tag = uuid.uuid4().hex[:8]
        self.responses: list[sip.Message] = []
        self.requests: list[sip.Message] = []
        self.heard: list[np.ndarray] = []     # 20 ms frames received, in order of arrival
        self.bye = asyncio.Event()
        self.answered = asyncio.Event()
        self.to = ""
        self.remote_media: tuple[str, int] | None = None
        self.codec = sdp.PCMU
        self.sending: np.ndarray | None = None   # what the microphone says, looped
        self.seq, self.ts, self.ssrc = random.randrange(65536), random.randrange(2**31), random.randrange(1, 2**31)
        self._sent = 0
        self._tasks: list[asyncio.Task] = []
        self._keys: list[str] = []

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.sip, _ = await loop.create_datagram_endpoint(lambda: _Sock(self._on_sip), local_addr=("127.0.0.1", 0))
        self.rtp, _ = await loop.create_datagram_endpoint(lambda: _Sock(self._on_rtp), local_addr=("127.0.0.1", 0))
        self.sip_port = self.sip.get_extra_info("sockname")[1]
        self.rtp_port = self.rtp.get_extra_info("sockname")[1]

    def _headers(self, method: str, cseq: int, branch: str | None = None) -> list[tuple[str, str]]:
        return [("Via", f"SIP/2.0/UDP 127.0.0.1:{self.sip_port};branch=z9hG4bK{branch or uuid.uuid4().hex[:12]}"),
                ("Max-Forwards", "70"), ("From", f"<sip:{self.number}@127.0.0.1>;tag={self.tag}"),
                ("To", self.to or f"<sip:mediation@{self.server[0]}>"), ("Call-ID", self.call_id),
                ("CSeq", f"{cseq} {method}"), ("Contact", f"<sip:{self.number}@127.0.0.1:{self.sip_port}>")]

    def offer(self) -> bytes:
        return (f"v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                f"m=audio {self.rtp_port} RTP/AVP 0 8 {EVENT_PT}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
                f"a=rtpmap:{EVENT_PT} telephone-event/8000\r\na=fmtp:{EVENT_PT} 0-15\r\na=sendrecv\r\n").encode()

    def send_raw(self, data: bytes) -> None:
        self.sip.sendto(data, self.server)

    async def dial(self, timeout: float = 10) -> sip.Message:
        self.invite_branch = uuid.uuid4().hex[:12]
        headers = self._headers("INVITE", 1, self.invite_branch) + [("Content-Type", "application/sdp")]
        self.send_raw(sip.request("INVITE", f"sip:mediation@{self.server[0]}:{self.server[1]}", headers, self.offer()))
        await asyncio.wait_for(self.answered.wait(), timeout)
        ok = next(r for r in self.responses if r.status == 200)
        self.to = ok.get("to")
        answer = sdp.parse_offer(ok.body)
        self.remote_media, self.codec = (answer.address, answer.port), answer.codec
        self.send_raw(sip.request("ACK", f"sip:mediation@{self.server[0]}:{self.server[1]}",
                                  self._headers("ACK", 1)))
        self._tasks.append(asyncio.ensure_future(self._media()))
        return ok

    def _on_sip(self, data, addr) -> None:
        msg = sip.parse(data)
        if msg.method is None:
            self.responses.append(msg)
            if msg.status == 200 and msg.cseq[1] == "INVITE":
                self.answered.set()
        else:
            self.requests.append(msg)
            if msg.method == "BYE":
                self.sip.sendto(sip.response(msg, 200), addr)
                self.bye.set()

    def _on_rtp(self, data, addr) -> None:
        packet = rtp.parse(data)
        if packet is not None and packet.pt in (sdp.PCMU, sdp.PCMA):
            self.heard.append(g711.decode(packet.payload, packet.pt))

    def keys(self, text: str) -> None:
        """Press keys (RFC 4733 events, sent in the media stream's timing)."""
        self._keys += list(text)

    def _send(self, pt: int, payload: bytes, marker: bool = False, ts: int | None = None) -> None:
        self.rtp.sendto(rtp.build(pt, self.seq, self.ts if ts is None else ts, self.ssrc, payload, marker),
                        self.remote_media)
        self.seq = (self.seq + 1) & 0xFFFF

    async def _media(self) -> None:
        loop = asyncio.get_running_loop()
        at = loop.time()
        while True:
            if self._keys:  # one key: 5 packets of 20 ms, the last three with E, one timestamp
                code = rtp.EVENT_KEYS.index(self._keys.pop(0))
                for i in range(5):
                    end = i >= 2
                    payload = struct.pack("!BBH", code, (0x80 if end else 0) | 10, 160 * (i + 1))
                    self._send(EVENT_PT, payload, marker=i == 0)
                    at += 0.02
                    await asyncio.sleep(max(0, at - loop.time()))
                self.ts += 160 * 5
                await asyncio.sleep(0.06)
                at = loop.time()
                continue
            if self.sending is not None:
                i = (self._sent * rtp.FRAME) % len(self.sending)
                frame = np.resize(np.roll(self.sending, -i), rtp.FRAME)
            else:
                frame = np.zeros(rtp.FRAME, np.int16)
            self._send(self.codec, g711.encode(frame, self.codec))
            self._sent += 1
            self.ts += rtp.FRAME
            at += 0.02
            await asyncio.sleep(max(0, at - loop.time()))

    def recent(self, seconds: float) -> np.ndarray:
        frames = self.heard[-int(seconds * 50):]
        return np.concatenate(frames) if frames else np.zeros(0, np.int16)

    async def hang_up(self) -> None:
        self.send_raw(sip.request("BYE", f"sip:mediation@{self.server[0]}:{self.server[1]}", self._headers("BYE", 2)))
        await asyncio.sleep(0.2)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        self.sip.close()
        self.rtp.close()
