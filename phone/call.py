"""One telephone call: its SIP dialog (our side), its RTP, the keypad, and the IVR that leads the
caller into the room (docs/protocol.md, "Telephone (SIP)").

The IVR: the session number and the personal PIN by keypad (a wrong pair three times ends the
call); a session that has ended says so and ends the call; then the join steps the room asks for,
through the same socket.io events a web page uses (consent: press 1; each notice read out and
acknowledged with 1); then the lobby with a waiting prompt until the mediator admits the caller.
"""
from __future__ import annotations

import asyncio
import logging
import random
import secrets
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable

import numpy as np

from phone import g711, rtp, sdp, sip
from phone.bridge import RoomLink

if TYPE_CHECKING:
    from phone.endpoint import Endpoint

log = logging.getLogger("mediation.phone")

MAX_WRONG = 3
DIGIT_TIMEOUT = 10.0      # seconds of keypad silence before the prompt is repeated
NUMBER_MAX = 12
ANSWER_TIMEOUT = 32.0     # 64*T1: no ACK by then, the call is given up
LOBBY_REPEAT = 30.0       # seconds between waiting prompts in the lobby


@dataclass
class Verdict:
    """What the dial-in check says: ok (with a join token), wrong, ended, throttled."""
    outcome: str
    token: str = ""
    wait: float = 0.0


DialIn = Callable[[str, str, str, str], Awaitable[Verdict]]  # (number, pin, source address, caller digits)


def local_address_for(remote: str, bound: str) -> str:
    """The address of ours the caller reaches: the bound one, or (bound to any) the one routed to it."""
    if bound not in ("0.0.0.0", "::", ""):
        return bound
    with socket.socket(socket.AF_INET6 if ":" in remote else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((remote, 9))
        return s.getsockname()[0]


class _Rtp(asyncio.DatagramProtocol):
    def __init__(self, call: "Call"):
        self.call = call

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            self.call.on_rtp(data, addr)
        except Exception:  # noqa: BLE001 - a bad packet is dropped, the call goes on
            log.exception("RTP packet dropped")


class Call:
    def __init__(self, endpoint: "Endpoint", invite: sip.Message, addr, offer: sdp.Offer):
        self.endpoint = endpoint
        self.invite = invite
        self.addr = addr
        self.offer = offer
        self.call_id = invite.call_id
        self.tag = secrets.token_hex(6)
        self.caller = sip.caller_digits(invite.get("from"))
        self.local_sdp = b""
        self.last_response = b""
        self.answered = asyncio.Event()
        self.ack = asyncio.Event()
        self.ended = asyncio.Event()
        self.rtp_transport: asyncio.DatagramTransport | None = None
        self.remote_media = (offer.address, offer.port)
        self.latched = False
        self.keys: asyncio.Queue[str] = asyncio.Queue(maxsize=64)
        self._last_event_ts: int | None = None
        self.jitter = rtp.JitterBuffer()
        self.mix = rtp.Mix()
        self.heard_from_room = 0    # 20 ms frames of the room's mix sent to the caller
        self._prompt: np.ndarray | None = None
        self._prompt_at = 0
        self._prompt_done = asyncio.Event()
        self.seq = random.randrange(65536)
        self.ts = random.randrange(2**32)
        self.ssrc = random.randrange(1, 2**32)
        self.link: RoomLink | None = None
        self.outcome = ""            # how the call ended, for logs and tests
        self._tasks: list[asyncio.Task] = []
        self._bye_cseq = 1

    # ------------------------------------------------------------------ SIP side

    def contact(self) -> list[tuple[str, str]]:
        host = local_address_for(self.addr[0], self.endpoint.listen.host)
        host = f"[{host}]" if ":" in host else host
        return [("Contact", f"<sip:mediation@{host}:{self.endpoint.listen.port}>"), ("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO")]

    def start(self) -> None:
        self._spawn(self._answer())

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)

    def _send(self, data: bytes) -> None:
        self.last_response = data
        self.endpoint.send(data, self.addr)

    def retransmit_last(self) -> None:
        if self.last_response:
            self.endpoint.send(self.last_response, self.addr)

    async def _answer(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            host = local_address_for(self.offer.address, self.endpoint.listen.host)
            self.rtp_transport, _ = await loop.create_datagram_endpoint(lambda: _Rtp(self), local_addr=(host, 0))
            port = self.rtp_transport.get_extra_info("sockname")[1]
            self.local_sdp = sdp.answer(self.offer, host, port)
            self._send(sip.response(self.invite, 180, to_tag=self.tag, extra=self.contact()))
            if self.ended.is_set():
                return
            self._send(sip.response(self.invite, 200, to_tag=self.tag, extra=self.contact(), body=self.local_sdp,
                                    content_type="application/sdp"))
            self.answered.set()
            wait, waited = 0.5, 0.0
            while not self.ack.is_set() and waited < ANSWER_TIMEOUT and not self.ended.is_set():
                try:
                    await asyncio.wait_for(self.ack.wait(), wait)
                except asyncio.TimeoutError:
                    waited += wait
                    wait = min(wait * 2, 4.0)
                    self.retransmit_last()
            if not self.ack.is_set():
                self.outcome = self.outcome or "no_ack"
                await self.hang_up()
        except Exception:  # noqa: BLE001
            log.exception("answering call %s failed", self.call_id)
            await self.finish("error")

    def acked(self) -> None:
        if not self.ack.is_set() and self.answered.is_set():
            self.ack.set()
            self._spawn(self._media())
            self._spawn(self._run_ivr())

    def cancelled(self) -> None:
        if not self.answered.is_set():
            self._send(sip.response(self.invite, 487, to_tag=self.tag))
            self._spawn(self.finish("cancelled"))

    def remote_hung_up(self) -> None:
        self._spawn(self.finish("caller_hung_up"))

    async def hang_up(self, outcome: str = "") -> None:
        """We end the call: BYE (sent three times unless the far end is gone), then free everything."""
        if self.ended.is_set():
            return
        if outcome:
            self.outcome = outcome
        if self.ack.is_set():
            inv = self.invite
            host = local_address_for(self.addr[0], self.endpoint.listen.host)
            uri = sip.uri_of(inv.get("contact")) or sip.uri_of(inv.get("from"))
            bye = sip.request("BYE", uri, [
                ("Via", f"SIP/2.0/UDP {host}:{self.endpoint.listen.port};branch=z9hG4bK{secrets.token_hex(8)};rport"),
                ("Max-Forwards", "70"), ("From", f"{inv.get('to')};tag={self.tag}"), ("To", inv.get("from")),
                ("Call-ID", self.call_id), ("CSeq", f"{self._bye_cseq} BYE")])
            self.endpoint.send(bye, self.addr)
        await self.finish(self.outcome or "hung_up")

    async def finish(self, outcome: str) -> None:
        if self.ended.is_set():
            return
        self.ended.set()
        self.outcome = self.outcome or outcome
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if self.link is not None:
            await self.link.close()
        if self.rtp_transport is not None:
            self.rtp_transport.close()
        self.endpoint.forget(self)
        log.info("call %s ended: %s", self.call_id, self.outcome)

    # ------------------------------------------------------------------ RTP side

    def on_rtp(self, data: bytes, addr) -> None:
        # Symmetric RTP: the first packet from the offered address fixes the port we answer to
        # (a caller behind NAT); packets from any other address are dropped.
        if addr[0] != self.offer.address:
            return
        if not self.latched:
            self.latched, self.remote_media = True, (addr[0], addr[1])
        elif addr[1] != self.remote_media[1]:
            return
        packet = rtp.parse(data)
        if packet is None:
            return
        if packet.pt == self.offer.codec and packet.payload:
            self.jitter.put(packet.seq, g711.decode(packet.payload[:rtp.FRAME * 4], packet.pt))
        elif packet.pt == self.offer.event_pt:
            event = rtp.event_key(packet.payload)
            if event is not None and packet.ts != self._last_event_ts:
                self._last_event_ts = packet.ts   # one key per event, however often it is repeated
                self._key(event[0])

    def info_key(self, body: bytes) -> None:
        key = rtp.dtmf_relay_key(body)
        if key is not None:
            self._key(key)

    def _key(self, key: str) -> None:
        if self.keys.full():
            return
        self.keys.put_nowait(key)
        if self._prompt is not None:  # barge-in: a key stops the prompt
            self._stop_prompt()

    def caller_frame(self) -> np.ndarray | None:
        """The caller's next 20 ms for the room (None: nothing arrived)."""
        return self.jitter.get()

    async def _media(self) -> None:
        """20 ms frames to the caller: the prompt being played, else the room's mix, else silence."""
        loop = asyncio.get_running_loop()
        silence = g711.encode(np.zeros(rtp.FRAME, np.int16), self.offer.codec)
        at = loop.time()
        while not self.ended.is_set():
            try:
                self._tick(silence)
            except Exception:  # noqa: BLE001 - one bad frame must not stop the call's clock
                log.exception("call %s: a media frame failed", self.call_id)
            at += 0.02
            await asyncio.sleep(max(0.0, at - loop.time()))

    def _tick(self, silence: bytes) -> None:
        """One 20 ms frame: the prompt being played, else the room's mix, else silence."""
        frame = None
        if self._prompt is not None:
            frame = self._prompt[self._prompt_at:self._prompt_at + rtp.FRAME]
            self._prompt_at += rtp.FRAME
            if self._prompt_at >= len(self._prompt):
                self._stop_prompt()
            if len(frame) < rtp.FRAME:
                frame = np.concatenate([frame, np.zeros(rtp.FRAME - len(frame), np.int16)])
        mixed = self.mix.pull()
        if frame is None and mixed is not None:
            frame = mixed
            self.heard_from_room += 1
        payload = g711.encode(frame, self.offer.codec) if frame is not None else silence
        if self.rtp_transport is not None:
            self.rtp_transport.sendto(rtp.build(self.offer.codec, self.seq, self.ts, self.ssrc, payload),
                                      self.remote_media)
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + rtp.FRAME) & 0xFFFFFFFF

    def _stop_prompt(self) -> None:
        self._prompt = None
        self._prompt_done.set()

    async def say(self, samples: np.ndarray, *, barge: bool = True) -> None:
        """Play a prompt to its end, or until the caller presses a key (with `barge`)."""
        if barge and not self.keys.empty():
            return
        self._prompt_done = asyncio.Event()
        self._prompt, self._prompt_at = samples, 0
        try:  # the media clock ends it; the timeout only guards against a clock that stopped
            await asyncio.wait_for(self._prompt_done.wait(), len(samples) / 8000 + 2.0)
        except asyncio.TimeoutError:
            log.warning("call %s: a prompt did not finish playing", self.call_id)
            self._stop_prompt()

    async def collect(self, prompt: np.ndarray, *, max_len: int = NUMBER_MAX, tries: int = 3) -> str | None:
        """Keys up to '#' (or max_len keys), after the prompt; the prompt is repeated after silence."""
        for _ in range(tries):
            await self.say(prompt)
            got = ""
            while True:
                try:
                    key = await asyncio.wait_for(self.keys.get(), DIGIT_TIMEOUT)
                except asyncio.TimeoutError:
                    break
                if key == "#":
                    return got
                if key == "*":
                    got = ""
                    continue
                got += key
                if len(got) >= max_len:
                    return got
            if got:
                return got
        return None

    async def key(self, prompt: np.ndarray, allowed: str, tries: int = 3) -> str | None:
        for _ in range(tries):
            await self.say(prompt)
            try:
                while True:
                    k = await asyncio.wait_for(self.keys.get(), DIGIT_TIMEOUT)
                    if k in allowed:
                        return k
            except asyncio.TimeoutError:
                continue
        return None

    # ------------------------------------------------------------------ the IVR

    async def _run_ivr(self) -> None:
        try:
            outcome = await self._ivr()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the call ends, the endpoint goes on
            log.exception("IVR of call %s failed", self.call_id)
            outcome = "error"
            try:
                await self.say(self.endpoint.prompts.speech("unavailable"), barge=False)
            except Exception:  # noqa: BLE001
                pass
        await self.hang_up(outcome)

    async def _ivr(self) -> str:
        p = self.endpoint.prompts
        wrong = 0
        while True:
            number = await self.collect(p.speech("welcome"))
            if number is None:
                return "no_input"
            pin = await self.collect(p.speech("pin"))
            if pin is None:
                return "no_input"
            verdict = await self.endpoint.dial_in(number, pin, self.addr[0], self.caller)
            if verdict.outcome == "ok":
                break
            if verdict.outcome == "ended":
                await self.say(p.speech("ended"), barge=False)
                return "session_ended"
            if verdict.outcome == "throttled":
                await self.say(p.speech("throttled"), barge=False)
                return "throttled"
            wrong += 1
            if wrong >= MAX_WRONG:
                await self.say(p.speech("wrong_final"), barge=False)
                return "wrong_pin"
            await self.say(p.speech("wrong"), barge=False)
        return await self._enter(verdict.token)

    async def _enter(self, token: str) -> str:
        p = self.endpoint.prompts
        self.link = RoomLink(self.endpoint.server_url, token, self)
        for _ in range(8):
            ack = await self.link.join()
            if ack.get("ok"):
                break
            error = ack.get("error") or {}
            code = error.get("code")
            if code == "consent_required":
                k = await self.key(p.speech("consent"), "12")
                agree = k == "1"
                if k is None:
                    return "no_input"
                await self.link.ask("consent.online", {"agree": agree})
                if not agree:
                    await self.say(p.speech("declined"), barge=False)
                    return "declined"
            elif code == "notice_required":
                for notice in error.get("notices") or []:
                    text = await p.text(f"{notice.get('title', '')}。{notice.get('text', '')}")
                    if await self.key(np.concatenate([text, p.speech("notice_ack")]), "1") is None:
                        return "no_input"
                    await self.link.ask("notice.ack", {"notices": [notice["id"]]})
            elif code == "session_ended":
                await self.say(p.speech("ended"), barge=False)
                return "session_ended"
            else:
                log.warning("call %s could not join: %s", self.call_id, error)
                await self.say(p.speech("unavailable"), barge=False)
                return code or "refused"
        else:
            return "refused"
        await self.link.publish()
        gone_task = asyncio.ensure_future(self.link.gone())
        if ack.get("in_lobby"):
            # The waiting prompt again every LOBBY_REPEAT s, cut short when admitted (or denied).
            while not self.link.admitted.is_set() and not gone_task.done():
                playing = asyncio.ensure_future(self.say(p.speech("waiting"), barge=False))
                admitted = asyncio.ensure_future(self.link.admitted.wait())
                await asyncio.wait([admitted, gone_task], timeout=LOBBY_REPEAT)
                admitted.cancel()
                if self.link.admitted.is_set() or gone_task.done():
                    self._stop_prompt()
                await playing
            if not gone_task.done():
                await self.say(p.speech("admitted"), barge=False)
        gone = await gone_task
        if gone == "session_ended":
            await self.say(p.speech("ended"), barge=False)
        elif gone:
            await self.say(p.speech("removed"), barge=False)
        return gone or "left"
