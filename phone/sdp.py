"""SDP offers of callers (RFC 4566) and our answer: one audio stream, G.711 and RFC 4733 events."""
from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

MAX_SDP = 4096
MAX_LINES = 128
PCMU, PCMA = 0, 8
CODECS = {PCMU: "PCMU", PCMA: "PCMA"}


class SdpError(ValueError):
    pass


@dataclass
class Offer:
    address: str          # where the caller wants our RTP
    port: int
    codec: int            # the G.711 payload type we pick (PCMU preferred, in the caller's order)
    event_pt: int | None  # telephone-event/8000, if offered


def parse_offer(body: bytes) -> Offer:
    """The first audio m-line of a caller's offer; SdpError if nothing we can play is in it."""
    if len(body) > MAX_SDP:
        raise SdpError("SDP too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError("SDP is not UTF-8") from None
    lines = [x.rstrip("\r") for x in text.split("\n") if x.strip()]
    if not lines or lines[0] != "v=0" or len(lines) > MAX_LINES:
        raise SdpError("not an SDP session description")
    session_c, media_c = None, None
    audio: list[str] | None = None
    rtpmap: dict[int, str] = {}
    in_audio = False
    for line in lines:
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"bad line {line[:40]!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            if audio is not None:  # only the first audio stream is ours
                in_audio = False
                continue
            fields = value.split()
            in_audio = len(fields) >= 4 and fields[0] == "audio"
            if in_audio:
                if fields[2] not in ("RTP/AVP", "RTP/AVPF"):
                    raise SdpError("only plain RTP/AVP audio")
                audio = fields
        elif kind == "c":
            fields = value.split()
            if len(fields) != 3 or fields[0] != "IN" or fields[1] not in ("IP4", "IP6"):
                raise SdpError("bad c= line")
            try:
                addr = str(ipaddress.ip_address(fields[2].split("/")[0]))
            except ValueError:
                raise SdpError("c= needs an address") from None
            if in_audio:
                media_c = addr
            elif audio is None:
                session_c = addr
        elif kind == "a" and in_audio and value.startswith("rtpmap:"):
            pt, _, enc = value[7:].partition(" ")
            if pt.isdigit() and int(pt) < 128:
                rtpmap[int(pt)] = enc.strip().lower()
    if audio is None:
        raise SdpError("no audio stream")
    if not audio[1].isdigit() or not 0 <= int(audio[1]) < 65536:
        raise SdpError("bad port")
    port = int(audio[1])
    address = media_c or session_c
    if address is None:
        raise SdpError("no connection address")
    formats = [int(x) for x in audio[3:] if x.isdigit() and int(x) < 128]
    codec = next((pt for pt in formats if pt in CODECS and rtpmap.get(pt, f"{CODECS[pt].lower()}/8000")
                  .startswith(CODECS[pt].lower() + "/8000")), None)
    if codec is None:
        raise SdpError("no PCMU or PCMA offered")
    event = next((pt for pt in formats if rtpmap.get(pt, "").startswith("telephone-event/8000")), None)
    return Offer(address=address, port=port, codec=codec, event_pt=event)


def answer(offer: Offer, address: str, port: int, session_id: int | None = None) -> bytes:
    sid = session_id or random.randrange(1, 2**31)
    family = "IP6" if ":" in address else "IP4"
    pts = [str(offer.codec)] + ([str(offer.event_pt)] if offer.event_pt is not None else [])
    lines = ["v=0", f"o=mediation {sid} {sid} IN {family} {address}", "s=mediation",
             f"c=IN {family} {address}", "t=0 0", f"m=audio {port} RTP/AVP {' '.join(pts)}",
             f"a=rtpmap:{offer.codec} {CODECS[offer.codec]}/8000"]
    if offer.event_pt is not None:
        lines += [f"a=rtpmap:{offer.event_pt} telephone-event/8000", f"a=fmtp:{offer.event_pt} 0-15"]
    lines += ["a=ptime:20", "a=sendrecv"]
    return ("\r\n".join(lines) + "\r\n").encode()
