"""The two peer connections of a participant (CONTRACT.md, "Signaling"):

* PublishSession: carries what the client sends. The client offers (and re-offers
  when its tracks change); the server answers. Each receiving m-line becomes a
  Producer whose receiver never decodes.
* SubscribeSession: carries what the server forwards. Only the server offers, so
  its RTP header-extension ids stay consistent for browsers. Renegotiations are
  serialized (one offer in flight) and coalesced: any number of changes while an
  offer is out lead to one more offer once the answer is in.

Both use bundlePolicy=MAX_BUNDLE (with aiortc's BALANCED, two video m-lines in one
offer mis-route the second stream) and the configured ICE servers only.

One module (~500 lines): the publish and subscribe connections share renegotiation and ICE handling.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from typing import Any, Awaitable, Callable, Optional, Union

from aiortc import RTCConfiguration, RTCIceCandidate, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.sdp import SessionDescription, candidate_from_sdp

from . import aiortc_hooks as hooks
from .errors import RoomError
from .media import FRAMES, PACKETS, Consumer, Producer, SenderSlot
from .participant import Participant
from .router import Router

logger = logging.getLogger(__name__)

# Frames a subscriber's sender may fall behind before its backlog is dropped.
SLOT_MAX_FRAMES = {"video": 30, "audio": 50}

MAX_PENDING_CANDIDATES = 64

_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}{next(_ids)}"


def make_configuration(ice_servers: Optional[list[Any]]) -> RTCConfiguration:
    """ice_servers: RTCIceServer objects or browser-style dicts
    {"urls": ..., "username": ..., "credential": ...}. None or [] means no STUN/TURN
    at all (aiortc would otherwise ask a public STUN server and stall ~5 s)."""
    servers = []
    for server in ice_servers or []:
        if isinstance(server, RTCIceServer):
            servers.append(server)
        elif isinstance(server, dict) and server.get("urls"):
            servers.append(
                RTCIceServer(
                    urls=server["urls"],
                    username=server.get("username"),
                    credential=server.get("credential"),
                )
            )
        elif isinstance(server, str):
            servers.append(RTCIceServer(urls=server))
        else:
            raise ValueError(f"bad ICE server entry: {server!r}")
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


async def maybe_await(result: Union[Awaitable[Any], Any]) -> Any:
    if inspect.isawaitable(result):
        return await result
    return result


def parse_candidate(
    candidate: Optional[str], sdp_mid: Optional[str], sdp_mline_index: Optional[int]
) -> Optional[RTCIceCandidate]:
    """A browser's trickled candidate (`RTCIceCandidate.toJSON()` fields); None for
    end-of-candidates, which aiortc does not need."""
    if not candidate:
        return None
    if not isinstance(candidate, str):
        raise RoomError("bad_candidate", "candidate must be a string")
    text = candidate.strip()
    if text.startswith("a="):
        text = text[2:]
    if text.startswith("candidate:"):
        text = text[len("candidate:"):]
    try:
        parsed = candidate_from_sdp(text)
    except Exception as exc:
        raise RoomError("bad_candidate", f"cannot parse ICE candidate: {exc!r}") from None
    parsed.sdpMid = sdp_mid
    parsed.sdpMLineIndex = sdp_mline_index
    if sdp_mid is None and sdp_mline_index is None:
        parsed.sdpMLineIndex = 0  # bundled: every m-line shares one transport
    return parsed


class _CandidateBuffer:
    """Trickled candidates can overtake the description they belong to (signaling
    handles events concurrently); aiortc drops candidates that arrive before a
    remote description, so hold them until one is applied."""

    pc: RTCPeerConnection

    def _init_candidates(self) -> None:
        self._pending_candidates: list[RTCIceCandidate] = []
        self._applying = False

    async def add_candidate(self, candidate: Optional[str], sdp_mid: Optional[str], sdp_mline_index: Optional[int]) -> None:
        parsed = parse_candidate(candidate, sdp_mid, sdp_mline_index)
        if parsed is None:
            return
        if self.pc.remoteDescription is None or self._applying:
            if len(self._pending_candidates) >= MAX_PENDING_CANDIDATES:
                raise RoomError("bad_candidate", "too many candidates before any description")
            self._pending_candidates.append(parsed)
            return
        await self._apply_candidate(parsed)

    async def _flush_candidates(self) -> None:
        pending, self._pending_candidates = self._pending_candidates, []
        for parsed in pending:
            try:
                await self._apply_candidate(parsed)
            except RoomError as exc:
                logger.warning("buffered ICE candidate refused: %s", exc.message)

    async def _apply_candidate(self, parsed: RTCIceCandidate) -> None:
        try:
            await self.pc.addIceCandidate(parsed)
        except Exception as exc:
            raise RoomError("bad_candidate", f"ICE candidate refused: {exc!r}") from None


def _description(sdp: Any, type_: Any, expected: str) -> RTCSessionDescription:
    if type_ != expected:
        raise RoomError("bad_request", f"expected an SDP {expected}, got type {type_!r}")
    if not isinstance(sdp, str) or not sdp.strip():
        raise RoomError("bad_sdp", f"the {expected} has no SDP text")
    return RTCSessionDescription(sdp=sdp, type=expected)


class PublishSession(_CandidateBuffer):
    """The participant's publish connection (client offers, server answers)."""

    def __init__(
        self,
        participant: Participant,
        configuration: RTCConfiguration,
        on_state: Callable[[str], None],
        on_closed_by_peer: Callable[[], None],
        reclaim: Optional[Callable[[str, Any, str], Optional[Producer]]] = None,
        may_share: Optional[Callable[[], None]] = None,
    ) -> None:
        self.participant = participant
        self.pc = RTCPeerConnection(configuration)
        # (kind, codec, role) -> a producer of the connection this one renews, to carry on (Room.renew).
        self._reclaim = reclaim
        # Raises RoomError when this participant may not start a share now (Room: one per area).
        self._may_share = may_share
        self._lock = asyncio.Lock()
        self._by_mid: dict[str, Producer] = {}
        # mid -> role ("small", "screen") of every m-line that ever had one: an m-line keeps it.
        self._roles: dict[str, str] = {}
        # Screen m-lines whose share was stopped on the server (Room.stop_share): they share
        # again only after an offer that turned them inactive, so a re-offer racing the stop
        # (a camera toggle) does not start the share again.
        self._stopped: set[str] = set()
        self.closed = False
        self._init_candidates()

        @self.pc.on("connectionstatechange")
        def _on_state() -> None:
            on_state(self.pc.connectionState)

        @self.pc.on("signalingstatechange")
        def _on_signaling() -> None:
            # aiortc closes the connection itself once the peer's DTLS is gone.
            if self.pc.signalingState == "closed" and not self.closed:
                self.closed = True
                on_closed_by_peer()

    async def handle_offer(self, sdp: Any, type_: Any, roles: Optional[dict[str, str]] = None
                           ) -> tuple[RTCSessionDescription, list[Producer], list[Producer]]:
        """Apply the client's offer; return (answer, producers added, producers removed).
        `roles`: mid -> "small" for the m-line that carries the small encoding of the camera
        (docs/protocol.md, "Link quality and adaptation"), "screen" for a shared screen
        ("Screen sharing"); the others are the camera and mic. An m-line keeps its role in
        later offers whether named again or not."""
        offer = _description(sdp, type_, "offer")
        roles = {**self._roles, **(roles or {})}
        async with self._lock:
            if self.closed:
                raise RoomError("gone", "the publish connection is closed")
            pc = self.pc
            if pc.signalingState != "stable":
                raise RoomError("bad_state", f"publish connection is {pc.signalingState}")
            self._validate_offer(offer.sdp, roles)
            self._applying = True
            try:
                await pc.setRemoteDescription(offer)
                for transceiver in pc.getTransceivers():
                    # Before the answer is applied: aiortc starts receivers then.
                    hooks.install_receiver_tap(transceiver.receiver, transceiver.kind)
                    transceiver.direction = "recvonly"  # we never send on this connection
                    if hooks.pin_single_codec(transceiver) is None:
                        raise RoomError("bad_sdp", f"no usable {transceiver.kind} codec offered")
                answer = await pc.createAnswer()
                await pc.setLocalDescription(answer)
            except RoomError:
                raise
            except Exception as exc:
                # aiortc raises ValueError, InvalidStateError, OperationError,
                # AssertionError... for bad or incompatible SDP.
                raise RoomError("bad_sdp", f"cannot apply the publish offer: {exc!r}") from None
            finally:
                self._applying = False
            await self._flush_candidates()
            added, removed = self._reconcile(roles)
            return pc.localDescription, added, removed

    def _validate_offer(self, sdp: str, roles: dict[str, str]) -> None:
        """Refuse, before touching the connection, what aiortc would half-apply:
        aiortc has no rollback, and it happily takes an offer without media (or one
        that drops existing m-lines) and then breaks in its connect task."""
        try:
            parsed = SessionDescription.parse(sdp)
        except Exception as exc:
            raise RoomError("bad_sdp", f"unparsable SDP: {exc!r}") from None
        media = [m for m in parsed.media if m.kind in ("audio", "video")]
        if not media:
            raise RoomError("bad_sdp", "the publish offer has no audio or video m-line")
        for m in parsed.media:
            if not m.rtp.muxId:
                raise RoomError("bad_sdp", "every m-line needs an a=mid")
            if not m.ice.usernameFragment or not m.ice.password:
                raise RoomError("bad_sdp", "ICE ufrag/pwd missing")
        current = self.pc.remoteDescription
        if current is not None:
            before = [(m.kind, m.rtp.muxId) for m in SessionDescription.parse(current.sdp).media]
            after = [(m.kind, m.rtp.muxId) for m in parsed.media]
            if after[: len(before)] != before:
                raise RoomError("bad_sdp", "a re-offer must keep the existing m-lines in order")
        kinds = {m.rtp.muxId: m.kind for m in parsed.media}
        for mid, role in roles.items():
            if role not in ("small", "screen") or kinds.get(mid) != "video":
                raise RoomError("bad_request", f"tracks: {mid!r} is no video m-line of the offer, or {role!r} no role")
        smalls = [m for m, r in roles.items() if r == "small"]
        screens = [m for m, r in roles.items() if r == "screen"]
        cameras = [m for m, k in kinds.items() if k == "video" and m not in roles]
        if len(smalls) > 1 or (smalls and len(cameras) != 1):
            raise RoomError("bad_request", "tracks: one small encoding, beside exactly one camera m-line")
        if len(screens) > 1:
            raise RoomError("bad_request", "tracks: one screen m-line at most")
        for mid, producer in self._by_mid.items():
            if mid in kinds and producer.role != roles.get(mid, "camera"):
                raise RoomError("bad_request", f"tracks: m-line {mid!r} cannot change its role")
        for mid, role in self._roles.items():
            if mid in kinds and roles.get(mid) != role:
                raise RoomError("bad_request", f"tracks: m-line {mid!r} cannot change its role")
        sending = {m.rtp.muxId for m in parsed.media if m.direction in ("sendonly", "sendrecv") and m.port != 0}
        starts = [m for m in screens if m in sending and m not in self._by_mid and m not in self._stopped]
        if starts and self._may_share is not None:
            self._may_share()  # another share in the area: refused before anything changes

    def _reconcile(self, roles: dict[str, str]) -> tuple[list[Producer], list[Producer]]:
        added: list[Producer] = []
        removed: list[Producer] = []
        for transceiver in self.pc.getTransceivers():
            mid = transceiver.mid
            receiving = transceiver.currentDirection in ("recvonly", "sendrecv")
            producer = self._by_mid.get(mid)
            if not receiving:
                self._stopped.discard(mid)
            if producer is not None and not receiving:
                del self._by_mid[mid]
                removed.append(producer)
            elif producer is None and receiving and mid not in self._stopped:
                tap = hooks.receiver_tap(transceiver.receiver)
                codec = hooks.negotiated_codecs(transceiver)[0]
                track = transceiver.receiver.track
                track_id = track.id if track is not None else None
                role = roles.get(mid, "camera")
                if role != "camera":
                    self._roles[mid] = role
                reused = (self._reclaim(transceiver.kind, codec, role)
                          if self._reclaim is not None and role != "small" else None)
                if reused is not None:
                    reused.rebind(tap, mid, track_id)
                    self._by_mid[mid] = reused
                    continue
                producer = Producer(
                    producer_id=new_id("pr"),
                    participant_id=self.participant.id,
                    kind=transceiver.kind,
                    mime=codec.mimeType,
                    codec=codec,
                    tap=tap,
                    mid=mid,
                    track_id=track_id,
                    role=role,
                )
                # A share is no camera: muting the camera does not pause it.
                producer.paused = role != "screen" and self.participant.muted.get(transceiver.kind, False)
                self._by_mid[mid] = producer
                added.append(producer)
        return added, removed

    @property
    def producers(self) -> list[Producer]:
        return list(self._by_mid.values())

    def drop(self, producer: Producer) -> None:
        """The server stopped this producer (a share the mediator stopped): its m-line carries
        nothing until the client's next offer turns it inactive."""
        for mid, known in list(self._by_mid.items()):
            if known is producer:
                del self._by_mid[mid]
                self._stopped.add(mid)

    async def close(self) -> list[Producer]:
        """Close the connection; its producers are returned, not closed (the caller decides)."""
        self.closed = True
        producers = list(self._by_mid.values())
        self._by_mid.clear()
        await self.pc.close()
        return producers


class _Slot:
    """One sendonly m-line of a subscribe connection."""

    def __init__(self, transceiver: Any, track: SenderSlot, mime: str, codec: Any) -> None:
        self.transceiver = transceiver
        self.track = track
        self.kind = track.kind
        self.mime = mime
        self.codec = codec
        self.consumer: Optional[Consumer] = None
        self.encoder: Optional[hooks.PackOnlyEncoder] = None  # the frame path's packetizer
        self.packets: Optional[hooks.PacketSender] = None     # or the packet path's leg
        # Direction as of the last applied answer: a slot is reused only once an
        # answer has turned it inactive, so a viewer never sees one m-line switch
        # from one publisher to another without passing through inactive.
        self.negotiated_active = False

    def fits(self, producer: Producer) -> bool:
        return (
            self.consumer is None
            and not self.negotiated_active
            and self.transceiver.mid is not None
            and self.kind == producer.kind
            and self.mime == producer.mime
            and getattr(self.codec, "parameters", None) == getattr(producer.codec, "parameters", None)
        )


OfferCallback = Callable[[str, dict], Any]


class SubscribeSession(_CandidateBuffer):
    """The participant's subscribe connection (server offers, client answers)."""

    def __init__(
        self,
        participant: Participant,
        configuration: RTCConfiguration,
        router: Router,
        on_offer: Optional[OfferCallback],
        on_state: Callable[[str], None],
        on_consumer_closed: Callable[[Consumer], None],
        forwarding: str = PACKETS,
    ) -> None:
        if forwarding not in (PACKETS, FRAMES):
            raise ValueError(f"forwarding must be {PACKETS} or {FRAMES}, not {forwarding!r}")
        self.participant = participant
        self.pc = RTCPeerConnection(configuration)
        self.router = router
        self.forwarding = forwarding
        self.slots: list[_Slot] = []
        self.consumers: dict[str, Consumer] = {}  # by producer id
        self.offers_sent = 0
        self.closed = False
        self._on_offer = on_offer
        self._on_consumer_closed = on_consumer_closed
        self._dirty = False
        self._task: Optional[asyncio.Task] = None
        self._answer: Optional[asyncio.Future] = None
        self._init_candidates()

        @self.pc.on("connectionstatechange")
        def _on_state() -> None:
            on_state(self.pc.connectionState)

        @self.pc.on("signalingstatechange")
        def _on_signaling() -> None:
            # Set as soon as a close begins (ours, or aiortc's own once the peer's
            # DTLS is gone), well before connectionState says "closed".
            if self.pc.signalingState == "closed":
                self._closed_by_peer()

    # -- called by the room -------------------------------------------------

    def sync(self) -> None:
        """Bring consumers in line with the router. Stops unwanted media at once
        (a caucus move must not leak a single further frame); new consumers and
        the renegotiation follow asynchronously."""
        if self.closed:
            return
        wanted = self.router.producers_for(self.participant)
        for producer_id, consumer in list(self.consumers.items()):
            if producer_id not in wanted or consumer.closed:
                consumer.close()  # -> _consumer_closed
        if any(pid not in self.consumers for pid in wanted):
            self._dirty = True
        if self._dirty and (self._task is None or self._task.done()):
            self._task = asyncio.ensure_future(self._negotiate())

    async def handle_answer(self, sdp: Any, type_: Any) -> None:
        answer = _description(sdp, type_, "answer")
        if self.closed:
            raise RoomError("gone", "the subscribe connection is closed")
        if self._answer is None or self._answer.done() or self.pc.signalingState != "have-local-offer":
            raise RoomError("bad_state", "no subscribe offer is waiting for an answer")
        self._applying = True
        try:
            await self.pc.setRemoteDescription(answer)
        except Exception as exc:
            raise RoomError("bad_sdp", f"cannot apply the subscribe answer: {exc!r}") from None
        finally:
            self._applying = False
        await self._flush_candidates()
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(None)

    async def close(self) -> None:
        self.closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except BaseException:
                pass
        for consumer in list(self.consumers.values()):
            consumer.close()
        await self.pc.close()

    def _closed_by_peer(self) -> None:
        # aiortc closes a connection by itself once the peer's DTLS is gone
        # (tab closed): stop forwarding into it and stop renegotiating it.
        if self.closed:
            return
        self.closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
        for consumer in list(self.consumers.values()):
            consumer.close()

    def last_rtcp(self) -> Optional[float]:
        """The latest RTCP from this viewer on any forwarding sender (None: none yet)."""
        times = [hooks.sender_last_rtcp(slot.transceiver.sender) for slot in self.slots if slot.consumer is not None]
        times = [t for t in times if t is not None]
        return max(times) if times else None

    def senders(self) -> list:
        """The forwarding senders that carry a consumer now."""
        return [slot.transceiver.sender for slot in self.slots if slot.consumer is not None]

    def bytes_out(self) -> int:
        """Bytes sent towards this viewer so far (with overhead and retransmissions)."""
        return sum(out.bytes_out for out in self._outputs())

    def hold_retransmits(self, hold: bool) -> None:
        # Over its budget, a viewer's NACKs only add to the queue that lost the packets.
        for slot in self.slots:
            out = slot.packets or slot.encoder
            if out is not None and slot.kind == "video":
                out.hold_retransmits = hold

    def _outputs(self) -> list:
        return [out for out in (slot.packets or slot.encoder for slot in self.slots) if out is not None]

    @property
    def negotiating(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- internals ------------------------------------------------------------

    def _consumer_closed(self, consumer: Consumer) -> None:
        if self.consumers.get(consumer.producer.id) is consumer:
            del self.consumers[consumer.producer.id]
        for slot in self.slots:
            if slot.consumer is consumer:
                slot.consumer = None
                slot.transceiver.direction = "inactive"
                self._dirty = True
        self._on_consumer_closed(consumer)
        if self._dirty and not self.closed and (self._task is None or self._task.done()):
            self._task = asyncio.ensure_future(self._negotiate())

    def _add_consumers(self) -> None:
        wanted = self.router.producers_for(self.participant)
        for producer_id, producer in wanted.items():
            if producer_id in self.consumers:
                continue
            slot = next((s for s in self.slots if s.fits(producer)), None)
            if slot is None:
                slot = self._new_slot(producer)
            consumer = Consumer(
                consumer_id=new_id("co"),
                producer=producer,
                sink=slot.track,
                subscriber_id=self.participant.id,
                on_closed=self._consumer_closed,
                packets=slot.packets,
            )
            slot.consumer = consumer
            slot.track.track_label = producer.id
            slot.transceiver.sender.replaceTrack(slot.track)  # refreshes the msid track id
            hooks.set_sender_stream_id(slot.transceiver.sender, producer.participant_id)
            slot.transceiver.direction = "sendonly"
            self.consumers[producer_id] = consumer
            self._dirty = True

    def _new_slot(self, producer: Producer) -> _Slot:
        track = SenderSlot(producer.kind, SLOT_MAX_FRAMES.get(producer.kind, 30))
        transceiver = self.pc.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences(hooks.codec_capabilities(producer.codec))  # type: ignore[arg-type]
        # A malicious answer could make this m-line receive: keep decoders away anyway.
        hooks.install_receiver_tap(transceiver.receiver, producer.kind)
        slot = _Slot(transceiver, track, producer.mime, producer.codec)

        def on_keyframe_request() -> None:
            # The viewer's PLI/FIR: the sender cannot make a keyframe, the publisher can.
            if slot.consumer is not None:
                slot.consumer.viewer_keyframe_request()

        if self.forwarding == PACKETS:
            slot.packets = hooks.install_packet_sender(
                transceiver.sender, producer.kind, getattr(producer.codec, "clockRate", None) or 90000,
                on_keyframe_request, on_ready=track.start_pulling)
        else:
            slot.encoder = hooks.install_sender_packer(transceiver.sender, producer.mime, on_keyframe_request)
        self.slots.append(slot)
        return slot

    def track_table(self) -> list[dict]:
        """What each m-line carries, sent along with the offer so the client can
        label the tracks it receives."""
        table = []
        for slot in self.slots:
            consumer = slot.consumer
            table.append(
                {
                    "mid": slot.transceiver.mid,
                    "kind": slot.kind,
                    "active": consumer is not None,
                    "producer_id": consumer.producer.id if consumer else None,
                    "participant_id": consumer.producer.participant_id if consumer else None,
                    # "screen": a shared screen (shown large), else "camera" (docs/protocol.md).
                    "role": consumer.producer.role if consumer else None,
                }
            )
        return table

    async def _negotiate(self) -> None:
        try:
            while self._dirty and not self.closed:
                self._dirty = False
                self._add_consumers()
                pc = self.pc
                offer = await pc.createOffer()
                await pc.setLocalDescription(offer)
                self._answer = asyncio.get_running_loop().create_future()
                self.offers_sent += 1
                message = {
                    "sdp": pc.localDescription.sdp,
                    "type": pc.localDescription.type,
                    "tracks": self.track_table(),
                }
                if self._on_offer is None:
                    logger.warning("room has no on_subscribe_offer callback; offer dropped")
                    return
                try:
                    await maybe_await(self._on_offer(self.participant.id, message))
                except Exception:
                    logger.exception("delivering the subscribe offer to %s failed", self.participant.id)
                    return
                await self._answer
                self._answer = None
                for slot in self.slots:
                    slot.negotiated_active = slot.transceiver.currentDirection in ("sendonly", "sendrecv")
                    consumer = slot.consumer
                    if consumer is not None and not consumer.active and slot.negotiated_active:
                        # Start at the live edge once the sender is actually reading.
                        slot.track.when_pulling(consumer.activate)
        except asyncio.CancelledError:
            raise
        except Exception:
            if self.closed or self.pc.signalingState == "closed":
                return  # closing underneath us: nothing to renegotiate
            logger.exception("subscribe renegotiation for %s failed", self.participant.id)
