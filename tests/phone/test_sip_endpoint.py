"""The SIP endpoint's answers over real UDP, and fuzzing of what parses SIP and SDP: bad input is
answered 4xx or dropped, never raises out of the parser, never stops the endpoint, joins nobody."""
from __future__ import annotations

import asyncio
import random
import uuid

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from sqlalchemy import select

from phone import rtp, sdp, sip
from server.core.models import AuditEntry
from tests.phone.caller import Caller

INVITE_SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
              b"m=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n")


def invite(body: bytes = INVITE_SDP, *, call_id: str | None = None, extra: str = "", compact: bool = False) -> bytes:
    h = {"Via": "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKx1", "From": "<sip:1390000@127.0.0.1>;tag=a",
         "To": "<sip:mediation@127.0.0.1>", "Call-ID": call_id or uuid.uuid4().hex, "CSeq": "1 INVITE",
         "Content-Type": "application/sdp"}
    short = {"Via": "v", "From": "f", "To": "t", "Call-ID": "i", "Content-Type": "c"}
    lines = [f"{short.get(k, k) if compact else k}: {v}" for k, v in h.items()]
    return ("INVITE sip:mediation@127.0.0.1 SIP/2.0\r\n" + "\r\n".join(lines) + extra +
            f"\r\n{'l' if compact else 'Content-Length'}: {len(body)}\r\n\r\n").encode() + body


def test_the_parser_reads_compact_forms_folding_and_the_body():
    msg = sip.parse(invite(compact=True) + b"trailing bytes past Content-Length")
    assert msg.method == "INVITE" and msg.get("call-id") and msg.body == INVITE_SDP
    folded = sip.parse(invite(extra="\r\nSubject: one\r\n two"))
    assert folded.get("subject") == "one two"
    offer = sdp.parse_offer(msg.body)
    assert (offer.address, offer.port, offer.codec, offer.event_pt) == ("127.0.0.1", 4000, sdp.PCMA, 101)


@pytest.mark.parametrize("data,status", [
    (invite()[:-10], 400),                                    # body shorter than Content-Length
    (invite().replace(b"CSeq: 1 INVITE", b"CSeq: x INVITE"), 400),
    (invite().replace(b"Call-ID", b"X-Call-ID"), None),       # no Call-ID: nothing to answer with
    (b"INVITE sip:x SIP/3.0\r\n\r\n", None),
    (b"\xff\xfe" * 10 + b"\r\n\r\n", None),
    (invite(extra="".join(f"\r\nX-H{i}: v" for i in range(80))), None),
    (b"A" * 9000, None),
])
def test_the_parser_refuses_bad_messages(data, status):
    with pytest.raises(sip.SipError) as exc:
        sip.parse(data)
    assert exc.value.status == status


@pytest.mark.parametrize("body", [
    b"", b"v=1\r\n", b"v=0\r\nc=IN IP4 nowhere\r\nm=audio 1 RTP/AVP 0\r\n",
    b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 99999 RTP/AVP 0\r\n",
    b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n",
    b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=video 4000 RTP/AVP 96\r\n",
    b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n",
    b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/SAVP 0\r\n",
])
def test_the_sdp_parser_refuses_what_it_cannot_play(body):
    with pytest.raises(sdp.SdpError):
        sdp.parse_offer(body)


def _mutate(data: bytes, rnd: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 6)):
        op, at = rnd.random(), rnd.randrange(len(b) + 1)
        if op < 0.3 and b:
            del b[at:at + rnd.randint(1, 20)]
        elif op < 0.6:
            b[at:at] = rnd.choice([b"\r\n", b":", b" ", b";", b"\x00", b"\xff", b"\r\n\r\n", b"999999999",
                                   b"Content-Length: 5000\r\n", b"m=audio 0 RTP/AVP 0\r\n", rnd.randbytes(8)])
        elif b:
            b[min(at, len(b) - 1)] = rnd.randrange(256)
    return bytes(b)


@hsettings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000) | st.builds(lambda seed: _mutate(invite(), random.Random(seed)), st.integers()))
def test_fuzzed_sip_and_sdp_parse_or_are_refused(data):
    try:
        msg = sip.parse(data)
    except sip.SipError:
        return
    try:
        sdp.parse_offer(msg.body)
    except sdp.SdpError:
        pass
    rtp.parse(data)
    rtp.dtmf_relay_key(msg.body)


@hsettings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzzed_sdp_and_rtp(data):
    try:
        sdp.parse_offer(data)
    except sdp.SdpError:
        pass
    rtp.parse(data)
    rtp.event_key(data)


class Probe(asyncio.DatagramProtocol):
    def __init__(self):
        self.got: list[sip.Message] = []

    def datagram_received(self, data, addr):
        self.got.append(sip.parse(data))


async def _probe():
    loop = asyncio.get_running_loop()
    transport, probe = await loop.create_datagram_endpoint(Probe, local_addr=("127.0.0.1", 0))
    return transport, probe


def _request(method: str, port: int, *, call_id: str = "", cseq: str = "") -> bytes:
    return sip.request(method, "sip:mediation@127.0.0.1", [
        ("Via", f"SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{uuid.uuid4().hex[:8]}"),
        ("From", "<sip:x@127.0.0.1>;tag=1"), ("To", "<sip:mediation@127.0.0.1>"),
        ("Call-ID", call_id or uuid.uuid4().hex), ("CSeq", cseq or f"1 {method}")])


async def test_the_endpoint_answers_each_method_as_documented(phone_live):
    transport, probe = await _probe()
    port = transport.get_extra_info("sockname")[1]
    try:
        for method, status in (("OPTIONS", 200), ("REGISTER", 405), ("SUBSCRIBE", 405), ("FROBNICATE", 501),
                               ("BYE", 481), ("CANCEL", 481), ("INFO", 481)):
            probe.got.clear()
            transport.sendto(_request(method, port), phone_live.sip)
            await asyncio.sleep(0.2)
            assert [m.status for m in probe.got] == [status], (method, [m.status for m in probe.got])
        probe.got.clear()
        transport.sendto(invite(b"v=0\r\nm=video 1 RTP/AVP 96\r\n"), phone_live.sip)
        transport.sendto(invite(b"").replace(b"Content-Type: application/sdp\r\n", b""), phone_live.sip)
        transport.sendto(invite()[:-10], phone_live.sip)
        await asyncio.sleep(0.3)
        assert sorted(m.status for m in probe.got) == [400, 400, 488]
    finally:
        transport.close()


async def test_the_200_is_sent_again_until_the_ack(phone_live):
    caller = Caller(phone_live.sip)
    await caller.open()
    try:
        headers = caller._headers("INVITE", 1) + [("Content-Type", "application/sdp")]
        caller.send_raw(sip.request("INVITE", "sip:mediation@127.0.0.1", headers, caller.offer()))
        await asyncio.sleep(1.8)
        oks = [r for r in caller.responses if r.status == 200]
        assert [r.status for r in caller.responses][:2] == [100, 180] and len(oks) >= 3  # 0, 0.5, 1.5 s
        assert len({r.tag("to") for r in oks}) == 1
        caller.to = oks[0].get("to")
        caller.send_raw(sip.request("ACK", "sip:mediation@127.0.0.1", caller._headers("ACK", 1)))
        await asyncio.sleep(1.5)
        assert len([r for r in caller.responses if r.status == 200]) == len(oks)
        await caller.hang_up()
        assert [r.status for r in caller.responses if r.cseq[1] == "BYE"] == [200]
        assert not phone_live.app["phone"].calls
    finally:
        await caller.close()


async def test_a_flood_of_broken_datagrams_neither_stops_the_endpoint_nor_joins_anyone(phone_live):
    rnd = random.Random(4733)
    transport, probe = await _probe()
    port = transport.get_extra_info("sockname")[1]
    endpoint = phone_live.app["phone"]
    try:
        seeds = [invite(), invite(compact=True), _request("OPTIONS", port), _request("BYE", port),
                 _request("INFO", port), b"v=0\r\n"]
        for i in range(3000):
            transport.sendto(_mutate(rnd.choice(seeds), rnd), phone_live.sip)
            if i % 200 == 0:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        probe.got.clear()
        transport.sendto(_request("OPTIONS", port, call_id="still-there"), phone_live.sip)
        await asyncio.sleep(0.3)
        assert [m.status for m in probe.got if m.call_id == "still-there"] == [200], "the endpoint stopped answering"
    finally:
        transport.close()
    for call in list(endpoint.calls.values()):
        await call.hang_up("test_over")
    async with phone_live.db.read() as s:
        actions = [a for (a,) in await s.execute(select(AuditEntry.action).where(
            AuditEntry.session_id == phone_live.session_id))]
    assert "participant.joined" not in actions and "phone.dialed_in" not in actions
