"""The SIP endpoint (UAS, UDP): answers calls from a PBX or trunk and hands each to a `Call`.

INVITE -> 100 Trying, 180 Ringing, 200 OK with our SDP (retransmitted until the ACK, RFC 3261
§13.3.1.4: T1 doubling up to T2, given up after 64*T1); ACK starts the IVR; BYE and CANCEL end
the call; OPTIONS is answered; INFO carries keys (application/dtmf-relay); other methods get 405
(known SIP methods) or 501. Every datagram is handled inside one guard: a bad one is answered 4xx
or dropped, and never reaches the loop's exception handler.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import Awaitable, Callable

from phone import sdp, sip
from phone.call import Call, DialIn
from phone.prompts import Prompts

log = logging.getLogger("mediation.phone")

T1, T2 = 0.5, 4.0
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"
KNOWN = {"REGISTER", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PRACK", "UPDATE", "PUBLISH"}
MAX_CALLS = 50


@dataclass
class Listen:
    transport: str
    host: str
    port: int


def parse_listen(value: str) -> Listen:
    """`udp:HOST:PORT` (SIP_LISTEN; port 0: any free one, for tests). TCP is not there yet."""
    transport, _, rest = value.strip().partition(":")
    host, _, port = rest.rpartition(":")
    if transport.lower() != "udp" or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"SIP_LISTEN must look like udp:127.0.0.1:5060, not {value!r}")
    return Listen("udp", host.strip("[]"), int(port))


class Endpoint(asyncio.DatagramProtocol):
    def __init__(self, listen: Listen, *, prompts: Prompts, dial_in: DialIn, server_url: str,
                 max_calls: int = MAX_CALLS):
        self.listen = listen
        self.prompts = prompts
        self.dial_in = dial_in
        self.server_url = server_url
        self.max_calls = max_calls
        self.calls: dict[str, Call] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.tag = secrets.token_hex(4)
        self.stats = {"dropped": 0, "refused": 0, "calls": 0}
        self.on_call_ended: list[Callable[[Call], Awaitable[None] | None]] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(self.listen.host,
                                                                                          self.listen.port))
        self.listen.port = self.transport.get_extra_info("sockname")[1]
        await self.prompts.prepare()
        log.info("SIP endpoint on udp:%s:%d", self.listen.host, self.listen.port)

    async def stop(self) -> None:
        for call in list(self.calls.values()):
            await call.hang_up()
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    # ------------------------------------------------------------------ datagrams

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            self._handle(data, addr)
        except Exception:  # noqa: BLE001 - no datagram may take the endpoint down
            self.stats["dropped"] += 1
            log.exception("SIP datagram from %s dropped", addr[0])

    def error_received(self, exc) -> None:
        log.debug("SIP socket error: %s", exc)

    def send(self, data: bytes, addr) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)

    def _handle(self, data: bytes, addr) -> None:
        if data.strip() == b"":  # keep-alive (RFC 5626 CRLF)
            return
        try:
            msg = sip.parse(data)
        except sip.SipError as exc:
            self.stats["dropped"] += 1
            log.debug("SIP from %s: %s", addr[0], exc.reason)
            if exc.status is not None:
                self._answer_unparsed(data, addr, exc.status)
            return
        if msg.method is None:
            return  # a response: we send no requests that want one but BYE, whose 200 needs nothing
        method = msg.method
        call = self.calls.get(msg.call_id)
        if method == "INVITE":
            self._invite(msg, addr, call)
        elif method == "ACK":
            if call is not None:
                call.acked()
        elif method == "BYE":
            self.send(sip.response(msg, 200 if call else 481, to_tag=self.tag), addr)
            if call is not None:
                call.remote_hung_up()
        elif method == "CANCEL":
            if call is None:
                self.send(sip.response(msg, 481, to_tag=self.tag), addr)
            else:
                self.send(sip.response(msg, 200, to_tag=call.tag), addr)
                call.cancelled()
        elif method == "OPTIONS":
            self.send(sip.response(msg, 200, to_tag=self.tag, extra=[("Allow", ALLOW), ("Accept", "application/sdp")]),
                      addr)
        elif method == "INFO":
            if call is None:
                self.send(sip.response(msg, 481, to_tag=self.tag), addr)
            elif msg.get("content-type").split(";")[0].strip().lower() == "application/dtmf-relay":
                self.send(sip.response(msg, 200, to_tag=call.tag), addr)
                call.info_key(msg.body)
            else:
                self.send(sip.response(msg, 415, to_tag=call.tag, extra=[("Accept", "application/dtmf-relay")]), addr)
        elif method in KNOWN:
            self.send(sip.response(msg, 405, to_tag=self.tag, extra=[("Allow", ALLOW)]), addr)
        else:
            self.send(sip.response(msg, 501, to_tag=self.tag), addr)

    def _answer_unparsed(self, data: bytes, addr, status: int) -> None:
        """A request with a readable head but a fault below (a bad CSeq, a short body): 400, if the
        headers a response needs are there; otherwise nothing."""
        head = data.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
        try:
            msg = sip.parse(head.replace(b"Content-Length", b"X-Ignored-Length").replace(b"\r\nl:", b"\r\nX-l:"))
        except sip.SipError:
            return
        if msg.method and msg.method != "ACK":
            self.send(sip.response(msg, status, to_tag=self.tag), addr)

    def _invite(self, msg: sip.Message, addr, call: Call | None) -> None:
        if call is not None:
            if msg.tag("to") and msg.cseq[0] > call.invite.cseq[0]:  # a re-INVITE: keep our media as it is
                self.send(sip.response(msg, 200, to_tag=call.tag, extra=call.contact(),
                                       body=call.local_sdp, content_type="application/sdp"), addr)
            else:
                call.retransmit_last()  # the caller did not hear us yet
            return
        if msg.tag("to"):
            self.send(sip.response(msg, 481, to_tag=self.tag), addr)
            return
        if msg.get("content-type").split(";")[0].strip().lower() != "application/sdp" or not msg.body:
            self.send(sip.response(msg, 488 if msg.body else 400, to_tag=self.tag), addr)
            return
        try:
            offer = sdp.parse_offer(msg.body)
        except sdp.SdpError as exc:
            self.stats["refused"] += 1
            log.info("INVITE from %s refused: %s", addr[0], exc)
            self.send(sip.response(msg, 488, to_tag=self.tag, extra=[("Warning", f'399 mediation "{exc}"')]), addr)
            return
        if len(self.calls) >= self.max_calls:
            self.send(sip.response(msg, 486, to_tag=self.tag), addr)
            return
        call = Call(self, msg, addr, offer)
        self.calls[msg.call_id] = call
        self.stats["calls"] += 1
        self.send(sip.response(msg, 100), addr)
        call.start()

    def forget(self, call: Call) -> None:
        if self.calls.get(call.call_id) is call:
            del self.calls[call.call_id]
        for hook in self.on_call_ended:
            try:
                result = hook(call)
                if asyncio.iscoroutine(result):
                    asyncio.ensure_future(result)
            except Exception:  # noqa: BLE001
                log.exception("call-ended hook failed")
