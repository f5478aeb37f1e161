"""The only module that touches aiortc's private internals.

aiortc has no public API for forwarding encoded media, so the SFU sits on a few
private hooks, all of them here, checked by `check_hooks()` (version pin + the
source fingerprint of every aiortc function whose behaviour we rely on) and by
`probe_hooks()` (the private instance attributes really exist). When either fails,
do not "fix" the fingerprint blindly: re-read the listed aiortc functions, adapt this
module, then run `python -m rooms.aiortc_hooks --fingerprints` and paste the output.

Receive side (`install_receiver_tap`): the receiver keeps doing what it does well
(SRTP, RTX unwrap, NACK generation, RTCP receiver reports, depayloading), but
  * its `receive()` is replaced per instance by one that never starts the
    `decoder_worker` thread, and
  * its jitter buffer is replaced per instance by one that hands each complete
    encoded frame to a callback (synchronously, on the event loop) instead of
    returning it for decoding. Video frames complete on the RTP marker bit (no
    extra frame of latency); audio frames are emitted per packet (no prefetch).
So a server receiver runs no thread, decodes nothing and queues nothing.

Send side, packet path (`install_packet_sender`, the default): a `PacketSender` per viewer's
sender writes each forwarded RTP packet itself (the sender's SSRC, the sequence number and
timestamp rooms/media.py rewrote, the header extensions the viewer negotiated, the payload as
it came), protects it with the transport's SRTP session and hands it to the socket of the
selected ICE pair, synchronously. The aiortc sender stays for negotiation and RTCP: its RTP loop
is replaced by one that reads nothing, its RTCP loop by one reporting what the leg sent, and
NACKs are answered from the leg's buffer (RTX where negotiated).

Send side, frame path (`install_sender_packer`, FORWARDING=frames): the sender's encoder is preset to a
`PackOnlyEncoder` that only packetizes (VP8 descriptor / H.264 FU-A+STAP-A /
audio as is) and raises if anything ever asks it to encode. A viewer's PLI/FIR,
which aiortc would turn into "force a keyframe in my encoder", is routed to a
callback instead (the room relays it to the producer).

Media ports (`set_media_ports`): with a configured range (MEDIA_PORTS) every host candidate
binds a UDP port inside it, so a firewall rule can allow exactly that range (server-reflexive
discovery is then off; behind NAT, MEDIA_ADDRESSES announces the public address).

ICE consent (`install_consent_freshness`, applied at import): aioice sends each RFC 7675
consent check once and gives up on it after 0.5 s, so a link with a round trip over half a
second loses consent after six checks (~30 s) although every answer arrives. Here each check
is a STUN transaction with retransmissions, checks overlap, and consent is lost only after
30 s (aioice's interval × failures) without any answer. This applies to every aioice
connection in the process: the server's and the test clients'.

One module (~1,340 lines) on purpose: every private aiortc internal we rely on is here, behind one version pin and fingerprint check.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import inspect
import logging
import sys
import time
import types
from typing import Callable, Optional

import random

import aioice
import aiortc
import pylibsrtp
from pylibsrtp import _binding as _srtp_binding
from aioice import ice as _ice
from aioice import stun as _stun
from aioice import turn as _turn
import socket as _socket_mod
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs import get_capabilities, is_rtx
from aiortc.codecs.base import Encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import (RTCP_PSFB_APP, RtcpByePacket, RtcpPsfbPacket, RtcpRrPacket, RtcpSdesPacket, RtcpSenderInfo,
                        RtcpSourceInfo, RtcpSrPacket, RtpPacket, unpack_remb_fci)
from aiortc.rtcdtlstransport import RTCDtlsTransport as _RTCDtlsTransport
from aiortc.rtcdtlstransport import State as _DtlsState
from aiortc.rtcdtlstransport import RtpRouter as _RtpRouter
from aiortc.rtcpeerconnection import RTCPeerConnection
from aiortc.rtcrtpreceiver import NackGenerator as _NackGenerator
from aiortc.rtcrtpreceiver import StreamStatistics as _StreamStatistics
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.utils import uint16_add, uint16_gt

from .errors import HookError
from .frames import EncodedFrame, is_frame_start, is_keyframe, vp8_temporal_id
from .stats import STATS

logger = logging.getLogger(__name__)

REQUIRED_AIORTC_VERSION = "1.16.0"
REQUIRED_AIOICE_VERSION = "0.13.0"
# aioice's own consent check, even when this module runs a second time (python -m rooms.aiortc_hooks).
_AIOICE_QUERY_CONSENT = getattr(_ice.Connection.query_consent, "aioice_original", _ice.Connection.query_consent)
_AIOICE_COMPONENT_CANDIDATES = getattr(_ice.Connection.get_component_candidates, "aioice_original",
                                       _ice.Connection.get_component_candidates)

# Video reassembly window in packets. Must be a power of two. 256 packets hold a
# large keyframe; a gap that NACK/RTX cannot fill within this window is dropped
# and a keyframe requested (aiortc's default of 512 stalls a viewer far longer).
VIDEO_BUFFER_PACKETS = 256
# A publisher's lost packet is asked for again (NACK) until it comes or is NACK_GIVE_UP old
# (aiortc asks once, when the gap appears): once a round trip to the publisher has passed, as
# libwebrtc does (the round trip its own viewing legs measure, ReceiverTap.rtt; NACK_RETRY while
# unknown, never more often than NACK_RETRY_MIN). A frame still incomplete FRAME_GIVE_UP after its
# gap appeared is skipped and a keyframe asked for, so loss on one publisher's uplink costs its
# viewers a short freeze, not seconds. On a long round trip both bounds stretch to leave room
# for retransmissions (give_up_times).
NACK_RETRY = 0.1
NACK_RETRY_MIN = 0.03
NACK_GIVE_UP = 1.0
FRAME_GIVE_UP = 0.6


def give_up_times(rtt: Optional[float]) -> tuple[float, float, float]:
    """(NACK again after, stop asking after, give the frame up after) for a round trip."""
    if rtt is None:
        return NACK_RETRY, NACK_GIVE_UP, FRAME_GIVE_UP
    return max(NACK_RETRY_MIN, 1.2 * rtt + 0.01), max(NACK_GIVE_UP, 3 * rtt), max(FRAME_GIVE_UP, 2 * rtt + 0.1)
# Bytes a forwarded packet costs on the wire besides its payload (RTP, SRTP tag, UDP, IPv4,
# header extensions): counted against the viewer's budget.
PACKET_OVERHEAD = 60

# sha256 (first 16 hex digits) of the source of every aiortc function whose exact
# behaviour the hooks below depend on. Regenerate with --fingerprints.
FINGERPRINTS: dict[str, str] = {
    "aiortc.rtcrtpreceiver.RTCRtpReceiver.__init__": "3e3b7b5cefbaac6f",
    "aiortc.rtcrtpreceiver.RTCRtpReceiver.receive": "d6d8d8d7a0bf4e95",
    "aiortc.rtcrtpreceiver.RTCRtpReceiver.stop": "63734b6894ce67a5",
    "aiortc.rtcrtpreceiver.RTCRtpReceiver._handle_rtp_packet": "4e54983d021a6336",
    "aiortc.rtcrtpreceiver.RTCRtpReceiver._send_rtcp_pli": "ae74c43d50f6eb7b",
    "aiortc.rtcrtpsender.RTCRtpSender.__init__": "beb1bc0ae04db20d",
    "aiortc.rtcrtpsender.RTCRtpSender._next_encoded_frame": "89dd9fa4fb33741c",
    "aiortc.rtcrtpsender.RTCRtpSender._handle_rtcp_packet": "a4ee4c7355f8de7a",
    "aiortc.rtcrtpsender.RTCRtpSender._run_rtp": "ff597a1d554cb373",
    "aiortc.jitterbuffer.JitterBuffer": "17030fbb0982258d",
    "aiortc.codecs.vpx.Vp8Encoder._packetize": "03f61a0f38aa0d62",
    "aiortc.codecs.h264.H264Encoder._split_bitstream": "f6a4817f670e6e26",
    "aiortc.codecs.h264.H264Encoder._packetize": "85ce3fe3b3174b5a",
    "aiortc.rtcpeerconnection.RTCPeerConnection.createAnswer": "f535f80c96a1acaa",
    "aiortc.rtcpeerconnection.RTCPeerConnection.createOffer": "3aa9df8d94497820",
    "aiortc.rtcpeerconnection.RTCPeerConnection.setRemoteDescription": "42c5e2eb7ca58b5f",
    "aioice.ice.Connection.query_consent": "fe49173a650a378a",
    "aioice.ice.Connection.build_request": "cd68d42d3765c2d1",
    "aioice.ice.Connection.get_component_candidates": "118597a9fcb703f9",
    "aiortc.rtcrtpsender.RTCRtpSender._retransmit": "ae0b2491944b52dc",
    "aiortc.rtcrtpreceiver.RTCRtpReceiver._send_rtcp_nack": "5735e597c91b5cf6",
    "aiortc.rtcrtpreceiver.NackGenerator": "4e89418b046d6ffc",
    "aiortc.rtcrtpreceiver.StreamStatistics": "9cd41a1293758a29",
    "aiortc.rtcrtpsender.RTCRtpSender.send": "3969482b77a2a65f",
    "aiortc.rtcrtpsender.RTCRtpSender.stop": "38c1e92baf8e2997",
    "aiortc.rtcrtpsender.RTCRtpSender._run_rtcp": "51e0a924eac4e39b",
    "aiortc.rtcrtpsender.RTCRtpSender._send_rtcp": "36c0f53aeac6b686",
    "aiortc.rtcdtlstransport.RTCDtlsTransport._send_rtp": "763b02bceb0b0ab9",
    "aiortc.rtcdtlstransport.RTCDtlsTransport._setup_srtp": "75cc6ec308f16da1",
    "aioice.ice.Connection.sendto": "bf162ec03bdce2cc",
    "aioice.ice.StunProtocol.send_data": "8bfbce074a897482",
    "pylibsrtp.Session.__init__": "2d5acb2032893aeb",
    "pylibsrtp.Session.protect": "4ea86b30b940a084",
    "pylibsrtp.Session._Session__process": "924e126dae5c15b8",
    "aiortc.rtcdtlstransport.RTCDtlsTransport._register_rtp_receiver": "d35a385b0afb20bf",
    "aiortc.rtcdtlstransport.RtpRouter.route_rtp": "e4bcc08d181438b7",
}

_FINGERPRINTED = {
    "aiortc.rtcrtpreceiver.RTCRtpReceiver.__init__": RTCRtpReceiver.__init__,
    "aiortc.rtcrtpreceiver.RTCRtpReceiver.receive": RTCRtpReceiver.receive,
    "aiortc.rtcrtpreceiver.RTCRtpReceiver.stop": RTCRtpReceiver.stop,
    "aiortc.rtcrtpreceiver.RTCRtpReceiver._handle_rtp_packet": RTCRtpReceiver._handle_rtp_packet,
    "aiortc.rtcrtpreceiver.RTCRtpReceiver._send_rtcp_pli": RTCRtpReceiver._send_rtcp_pli,
    "aiortc.rtcrtpsender.RTCRtpSender.__init__": RTCRtpSender.__init__,
    "aiortc.rtcrtpsender.RTCRtpSender._next_encoded_frame": RTCRtpSender._next_encoded_frame,
    "aiortc.rtcrtpsender.RTCRtpSender._handle_rtcp_packet": RTCRtpSender._handle_rtcp_packet,
    "aiortc.rtcrtpsender.RTCRtpSender._run_rtp": RTCRtpSender._run_rtp,
    "aiortc.jitterbuffer.JitterBuffer": JitterBuffer,
    "aiortc.codecs.vpx.Vp8Encoder._packetize": Vp8Encoder._packetize,
    "aiortc.codecs.h264.H264Encoder._split_bitstream": H264Encoder._split_bitstream,
    "aiortc.codecs.h264.H264Encoder._packetize": H264Encoder._packetize,
    "aiortc.rtcpeerconnection.RTCPeerConnection.createAnswer": RTCPeerConnection.createAnswer,
    "aiortc.rtcpeerconnection.RTCPeerConnection.createOffer": RTCPeerConnection.createOffer,
    "aiortc.rtcpeerconnection.RTCPeerConnection.setRemoteDescription": RTCPeerConnection.setRemoteDescription,
    # The original, before install_consent_freshness replaces it.
    "aioice.ice.Connection.query_consent": _AIOICE_QUERY_CONSENT,
    "aioice.ice.Connection.build_request": _ice.Connection.build_request,
    "aioice.ice.Connection.get_component_candidates": _AIOICE_COMPONENT_CANDIDATES,
    "aiortc.rtcrtpsender.RTCRtpSender._retransmit": RTCRtpSender._retransmit,
    "aiortc.rtcrtpreceiver.RTCRtpReceiver._send_rtcp_nack": RTCRtpReceiver._send_rtcp_nack,
    "aiortc.rtcrtpreceiver.NackGenerator": _NackGenerator,
    "aiortc.rtcrtpreceiver.StreamStatistics": _StreamStatistics,
    # The packet path (PacketSender): the sender's start, its RTCP loop and send, what the
    # DTLS transport does to send RTP (SRTP, then the ICE connection), and aioice's send.
    "aiortc.rtcrtpsender.RTCRtpSender.send": RTCRtpSender.send,
    "aiortc.rtcrtpsender.RTCRtpSender.stop": RTCRtpSender.stop,
    "aiortc.rtcrtpsender.RTCRtpSender._run_rtcp": RTCRtpSender._run_rtcp,
    "aiortc.rtcrtpsender.RTCRtpSender._send_rtcp": RTCRtpSender._send_rtcp,
    "aiortc.rtcdtlstransport.RTCDtlsTransport._send_rtp": _RTCDtlsTransport._send_rtp,
    "aiortc.rtcdtlstransport.RTCDtlsTransport._setup_srtp": _RTCDtlsTransport._setup_srtp,
    # The receive side's routing, whose SSRC table _receive_without_decoder adds the RTX SSRCs to.
    "aiortc.rtcdtlstransport.RTCDtlsTransport._register_rtp_receiver": _RTCDtlsTransport._register_rtp_receiver,
    "aiortc.rtcdtlstransport.RtpRouter.route_rtp": _RtpRouter.route_rtp,
    "aioice.ice.Connection.sendto": _ice.Connection.sendto,
    "aioice.ice.StunProtocol.send_data": _ice.StunProtocol.send_data,
    # _srtp_protector does what Session.protect does, with Session's own buffer and context.
    "pylibsrtp.Session.__init__": pylibsrtp.Session.__init__,
    "pylibsrtp.Session.protect": pylibsrtp.Session.protect,
    "pylibsrtp.Session._Session__process": pylibsrtp.Session._Session__process,
}

# Private instance attributes read or written below (checked by probe_hooks()).
_RECEIVER_ATTRS = (
    "_RTCRtpReceiver__started",
    "_RTCRtpReceiver__codecs",
    "_RTCRtpReceiver__rtx_ssrc",
    "_RTCRtpReceiver__transport",
    "_RTCRtpReceiver__rtcp_task",
    "_RTCRtpReceiver__jitter_buffer",
    "_RTCRtpReceiver__decoder_thread",
    "_RTCRtpReceiver__remote_bitrate_estimator",
    "_RTCRtpReceiver__nack_generator",
    "_RTCRtpReceiver__remote_streams",
)
_SENDER_ATTRS = ("_RTCRtpSender__encoder", "_stream_id", "_ssrc", "_rtx_ssrc", "_RTCRtpSender__rtt",
                 "_RTCRtpSender__started", "_RTCRtpSender__rtp_started", "_RTCRtpSender__rtp_exited",
                 "_RTCRtpSender__rtcp_started", "_RTCRtpSender__rtcp_exited", "_RTCRtpSender__cname",
                 "_RTCRtpSender__lsr", "_RTCRtpSender__lsr_time")
_TRANSCEIVER_ATTRS = ("_codecs", "_preferred_codecs")


def fingerprint(obj: object) -> str:
    source = inspect.getsource(obj)  # type: ignore[arg-type]
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def current_fingerprints() -> dict[str, str]:
    return {name: fingerprint(obj) for name, obj in _FINGERPRINTED.items()}


_checked = False


def check_hooks() -> None:
    """Raise HookError unless aiortc is exactly the version these hooks were written
    against and every aiortc function they depend on is unchanged."""
    global _checked
    if _checked:
        return
    problems = []
    if aiortc.__version__ != REQUIRED_AIORTC_VERSION:
        problems.append(
            f"aiortc {aiortc.__version__} is installed, rooms/ requires exactly "
            f"{REQUIRED_AIORTC_VERSION}"
        )
    if aioice.__version__ != REQUIRED_AIOICE_VERSION:
        problems.append(
            f"aioice {aioice.__version__} is installed, rooms/ requires exactly "
            f"{REQUIRED_AIOICE_VERSION}"
        )
    init = inspect.getsource(_ice.Connection.__init__)
    for name in ("self._nominated", "self._query_consent_task", "self.remote_password"):
        if name not in init:
            problems.append(f"aioice.ice.Connection.__init__ no longer sets {name}")
    for cls, names in (
        (RTCRtpReceiver, ("receive", "stop", "_handle_rtp_packet", "_send_rtcp_pli", "_run_rtcp")),
        (RTCRtpSender, ("_next_encoded_frame", "_send_keyframe", "_handle_rtcp_packet", "_run_rtp", "replaceTrack")),
        (JitterBuffer, ("add", "_remove_frame", "remove", "smart_remove")),
        (Vp8Encoder, ("_packetize",)),
        (H264Encoder, ("_split_bitstream", "_packetize")),
        (RTCRtpTransceiver, ("setCodecPreferences",)),
    ):
        for name in names:
            if not hasattr(cls, name):
                problems.append(f"{cls.__module__}.{cls.__qualname__}.{name} is missing")
    if getattr(pylibsrtp, "SRTP_MAX_TRAILER_LEN", None) != _SRTP_TRAILER:
        problems.append("pylibsrtp.SRTP_MAX_TRAILER_LEN changed (the packet path protects in its buffer)")
    for name, obj in _FINGERPRINTED.items():
        try:
            got = fingerprint(obj)
        except (OSError, TypeError) as exc:
            problems.append(f"cannot read the source of {name}: {exc}")
            continue
        if got != FINGERPRINTS.get(name):
            problems.append(f"{name} changed (fingerprint {got}, expected {FINGERPRINTS.get(name)})")
    if problems:
        raise HookError(
            "rooms/aiortc_hooks.py relies on aiortc private internals that do not match:\n  - "
            + "\n  - ".join(problems)
            + "\nMedia forwarding would silently break (decoder threads, black video). "
            "Re-read those aiortc functions, adapt rooms/aiortc_hooks.py, then update "
            "FINGERPRINTS (python -m rooms.aiortc_hooks --fingerprints)."
        )
    _checked = True


async def probe_hooks() -> None:
    """Check, on real aiortc objects, that the private instance attributes exist and
    that installing the hooks leaves no decoder thread and no encoder behind."""
    from aiortc import RTCConfiguration
    from aiortc.rtcconfiguration import RTCBundlePolicy

    check_hooks()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    try:
        problems = []
        for kind in ("audio", "video"):
            transceiver = pc.addTransceiver(kind, direction="sendrecv")
            for obj, attrs in (
                (transceiver.receiver, _RECEIVER_ATTRS),
                (transceiver.sender, _SENDER_ATTRS),
                (transceiver, _TRANSCEIVER_ATTRS),
            ):
                for attr in attrs:
                    if not hasattr(obj, attr):
                        problems.append(f"{type(obj).__name__} instance has no {attr}")
            if problems:
                continue
            tap = install_receiver_tap(transceiver.receiver, kind)
            if receiver_has_decoder_thread(transceiver.receiver):
                problems.append(f"{kind} receiver has a decoder thread")
            if transceiver.receiver._RTCRtpReceiver__jitter_buffer._tap is not tap:  # type: ignore[attr-defined]
                problems.append(f"{kind} jitter buffer tap not installed")
            mime = "video/vp8" if kind == "video" else "audio/opus"
            install_sender_packer(transceiver.sender, mime, lambda: None)
            if not isinstance(sender_encoder(transceiver.sender), PackOnlyEncoder):
                problems.append(f"{kind} sender encoder not preset")
            leg = pc.addTransceiver(kind, direction="sendonly")
            install_packet_sender(leg.sender, kind, 90000 if kind == "video" else 48000, lambda: None)
            if sender_packets(leg.sender) is None or leg.sender._run_rtp.__func__ is not _packet_run_rtp:
                problems.append(f"{kind} packet sender not installed")
            dtls = leg.sender.transport
            for attr in ("_state", "_tx_srtp", "transport"):
                if not hasattr(dtls, attr):
                    problems.append(f"RTCDtlsTransport instance has no {attr}")
            if not hasattr(dtls.transport, "_connection") or not hasattr(dtls.transport._connection, "_nominated"):
                problems.append("RTCIceTransport has no _connection._nominated")
        if problems:
            raise HookError("aiortc private attributes changed:\n  - " + "\n  - ".join(problems))
    finally:
        await pc.close()


# --------------------------------------------------------------------------- receive


class ReceiverTap:
    """Per-receiver state of the forwarding hook: codecs by payload type, the primary
    media SSRC, RTP timestamp unwrapping, counters, and where frames go."""

    def __init__(self, receiver: RTCRtpReceiver, kind: str) -> None:
        self.receiver = receiver
        self.kind = kind
        self.on_frame: Optional[Callable[[EncodedFrame], None]] = None
        # The packet path (rooms/media.py): every RTP packet of the stream as the receiver has it
        # (SRTP decrypted, RTX unwrapped), called before the jitter buffer looks at it, late and
        # repeated packets included (each consumer sorts those out against its own numbering).
        self.on_packet: Optional[Callable[[RtpPacket], None]] = None
        # payload type -> (lower-case mime, clock rate), filled by receive()
        self.codecs: dict[int, tuple[str, int]] = {}
        # SSRC signalled in the SDP (a=ssrc) and SSRC the media really arrives on
        # (taken after RTX unwrapping, so never the RTX SSRC).
        self.signalled_ssrc: Optional[int] = None
        self.media_ssrc: Optional[int] = None
        self.packets = 0
        self.frames = 0
        self.bytes = 0
        self.dropped_partial = 0
        self.late = 0             # packets behind what was already emitted (dropped)
        self.frames_given_up = 0  # frames skipped after FRAME_GIVE_UP
        self.nacks_repeated = 0
        # The round trip to the publisher (seconds; None: not known yet), which paces the NACKs.
        self.rtt: Optional[float] = None
        # Called when a frame was skipped: what follows needs a keyframe (the producer's viewers wait).
        self.on_loss: Optional[Callable[[], None]] = None
        self.last_packet: Optional[float] = None  # time.monotonic() of the latest RTP packet
        # The loudest audio level (-dBov, RFC 6464) heard since rooms/speaker.py last looked.
        self.loudest: Optional[int] = None
        self._last_ts32: Optional[int] = None
        self._last_ext = 0
        self._pli_tasks: set[asyncio.Task] = set()

    @property
    def primary_ssrc(self) -> Optional[int]:
        return self.media_ssrc if self.media_ssrc is not None else self.signalled_ssrc

    def codec_of(self, payload_type: int) -> tuple[str, int]:
        return self.codecs.get(payload_type, ("", 90000 if self.kind == "video" else 48000))

    def emit(self, data: bytes, timestamp: int, payload_type: int, tid: Optional[int] = None) -> None:
        # Unroll 32-bit RTP timestamp wraps so pts is monotonic for recorders.
        if self._last_ts32 is None:
            ext = timestamp
        else:
            delta = (timestamp - self._last_ts32) & 0xFFFFFFFF
            if delta >= 0x80000000:
                delta -= 0x100000000
            ext = self._last_ext + delta
        self._last_ts32 = timestamp
        self._last_ext = ext
        codec, clock_rate = self.codec_of(payload_type)
        self.frames += 1
        self.bytes += len(data)
        frame = EncodedFrame(data, ext, clock_rate, codec, is_keyframe(codec, data), time.time(), tid)
        if self.on_frame is not None:
            self.on_frame(frame)

    def send_pli(self) -> bool:
        """Ask the remote sender for a keyframe on its primary SSRC. Returns False
        when no SSRC is known yet (nothing received, nothing signalled)."""
        ssrc = self.primary_ssrc
        if ssrc is None:
            return False
        task = asyncio.ensure_future(self.receiver._send_rtcp_pli(ssrc))
        self._pli_tasks.add(task)
        task.add_done_callback(self._pli_tasks.discard)
        return True


class _VideoTapBuffer(JitterBuffer):
    """aiortc's jitter buffer storage, but complete frames go to the tap as soon as their
    marker packet is in, and `add` returns no frame (so the receiver never queues anything
    for decoding). Loss handling is ours: lost packets are NACKed again until they come
    (once a round trip, give_up_times), a frame that cannot be completed is skipped after a time
    bound (FRAME_GIVE_UP, longer on a long round trip), and a late or duplicate packet is dropped instead of resetting the buffer."""

    def __init__(self, tap: ReceiverTap, receiver: Optional[RTCRtpReceiver] = None) -> None:
        super().__init__(capacity=VIDEO_BUFFER_PACKETS, is_video=True)
        self._tap = tap
        self._receiver = receiver
        self._want_pli = False
        self._max_seq: Optional[int] = None
        self._gap_since: Optional[float] = None
        self._gap_origin: Optional[int] = None
        self._asked: dict[int, list[float]] = {}  # missing seq -> [first missed, last NACK]
        self._sweep_at = 0.0

    def add(self, packet):  # type: ignore[no-untyped-def]
        tap = self._tap
        now = time.monotonic()
        tap.media_ssrc = packet.ssrc
        tap.packets += 1
        tap.last_packet = now
        if tap.on_packet is not None:
            tap.on_packet(packet)
        seq = packet.sequence_number
        origin = self._origin
        if origin is not None and seq != origin and uint16_gt(origin, seq):
            tap.late += 1  # its frame was emitted or given up already (aiortc would reset here)
            return False, None
        if self._max_seq is None or uint16_gt(seq, self._max_seq):
            self._max_seq = seq
        pli_flag, _ = super().add(packet)
        self._bound_gap(now)
        if self._receiver is not None and now >= self._sweep_at:
            self._renack(now)
        if self._want_pli:
            self._want_pli = False
            pli_flag = True
        return pli_flag, None

    def _bound_gap(self, now: float) -> None:
        # The head frame is waiting: packets are in the buffer but it could not be emitted. That is
        # normal while its packets arrive; it is loss when a packet inside it (or before it) is
        # missing and later ones are in. A hole in the middle of the head frame blocks as surely
        # as a missing first packet, so both are given up after FRAME_GIVE_UP.
        origin = self._origin
        if self._max_seq is None or origin is None or not (
                uint16_gt(self._max_seq, origin) or self._packets[origin % self._capacity] is not None):
            self._gap_since = None
            return
        if self._gap_since is None or self._gap_origin != origin:
            self._gap_since, self._gap_origin = now, origin
            return
        frame_give_up = give_up_times(self._tap.rtt)[2]
        if now - self._gap_since < frame_give_up:
            return
        self._gap_since = None
        if not self._head_has_hole():
            return  # a frame still arriving, slowly (a keyframe on a narrow uplink)
        # Give up every frame with a hole at the head; _emit_head_frame drops the rest of a frame
        # whose start is lost. Viewers wait for the keyframe asked for.
        given_up = 0
        while self._head_has_hole():
            self._skip_head_frame()
            given_up += 1
            while self._emit_head_frame():
                pass
        self._tap.frames_given_up += given_up
        # Rare on a working link, and each costs the viewers a keyframe wait: worth a line.
        logger.info("video ssrc %s: %d frame(s) given up after %.1f s with a packet missing "
                    "(%d NACKs repeated so far); keyframe asked", self._tap.media_ssrc, given_up,
                    frame_give_up, self._tap.nacks_repeated)
        self._want_pli = True
        if self._tap.on_loss is not None:
            self._tap.on_loss()

    def _head_has_hole(self) -> bool:
        """A packet is missing at or inside the head frame while later packets are in."""
        cap, packets, origin, last = self._capacity, self._packets, self._origin, self._max_seq
        if last is None or origin is None or uint16_gt(origin, last):
            return False
        first = packets[origin % cap]
        if first is None:
            return True
        seq = origin
        while seq != last:
            seq = (seq + 1) & 0xFFFF
            packet = packets[seq % cap]
            if packet is None:
                return True
            if packet.timestamp != first.timestamp:
                return False
        return False

    def _skip_head_frame(self) -> None:
        """Drop the head: the missing packets before the next one in, or the frame the head
        packet belongs to (its packets and holes, up to the next frame's first packet in)."""
        cap, packets, last = self._capacity, self._packets, self._max_seq
        first = packets[self._origin % cap]
        while not uint16_gt(self._origin, last):
            packet = packets[self._origin % cap]
            if first is None and packet is not None:
                return
            if first is not None and packet is not None and packet.timestamp != first.timestamp:
                return
            self.remove(1)

    def _renack(self, now: float) -> None:
        retry, give_up, _ = give_up_times(self._tap.rtt)
        self._sweep_at = now + retry / 2
        generator = self._receiver._RTCRtpReceiver__nack_generator  # type: ignore[union-attr]
        missing = generator.missing if generator is not None else ()
        if not missing and not self._asked:
            return
        asked = self._asked
        for seq in list(asked):
            if seq not in missing:
                del asked[seq]
        again = []
        for seq in list(missing):
            times = asked.get(seq)
            if times is None:
                asked[seq] = [now, now]  # aiortc NACKed it just now, when the gap appeared
            elif now - times[0] >= give_up:
                missing.discard(seq)  # too old to matter: stop asking
                del asked[seq]
            elif now - times[1] >= retry:
                times[1] = now
                again.append(seq)
        if again:
            self._tap.nacks_repeated += len(again)
            task = asyncio.ensure_future(self._receiver._send_rtcp_nack(self._tap.media_ssrc, sorted(again)))  # type: ignore[union-attr]
            self._tap._pli_tasks.add(task)
            task.add_done_callback(self._tap._pli_tasks.discard)

    def _remove_frame(self, sequence_number: int) -> None:  # type: ignore[override]
        while self._emit_head_frame():
            pass
        return None

    def _emit_head_frame(self) -> bool:
        cap = self._capacity
        packets = self._packets
        origin = self._origin
        first = packets[origin % cap]
        if first is None:
            return False
        timestamp = first.timestamp
        end = 0
        for count in range(cap):
            packet = packets[(origin + count) % cap]
            if packet is None:
                return False  # gap: wait for NACK/RTX (or overflow)
            if packet.timestamp != timestamp:
                end = count  # next frame began without a marker on this one
                break
            if packet.marker:
                end = count + 1
                break
        else:
            return False
        frame_packets = [packets[(origin + i) % cap] for i in range(end)]
        self.remove(end)
        codec = self._tap.codec_of(first.payload_type)[0]
        if is_frame_start(codec, first.payload) is False:
            # Its first packets were lost (or dropped): garbage for a decoder.
            self._tap.dropped_partial += 1
            logger.info("video ssrc %s: a frame without its first packet dropped; keyframe asked",
                        self._tap.media_ssrc)
            self._want_pli = True
            if self._tap.on_loss is not None:
                self._tap.on_loss()
            return True
        tid = vp8_temporal_id(first.payload) if codec == "video/vp8" else None
        self._tap.emit(b"".join([p._data for p in frame_packets]), timestamp, first.payload_type, tid)
        return True


class _AudioTapBuffer:
    """Audio needs no server-side jitter buffer: every packet is a frame and the
    viewer's own jitter buffer absorbs jitter. Late and duplicate packets are dropped."""

    capacity = 0

    def __init__(self, tap: ReceiverTap) -> None:
        self._tap = tap
        self._last_seq: Optional[int] = None

    def add(self, packet):  # type: ignore[no-untyped-def]
        tap = self._tap
        tap.media_ssrc = packet.ssrc
        tap.packets += 1
        tap.last_packet = time.monotonic()
        if tap.on_packet is not None:
            tap.on_packet(packet)
        level = packet.extensions.audio_level
        if level is not None and (tap.loudest is None or level[1] & 0x7F < tap.loudest):
            tap.loudest = level[1] & 0x7F
        seq = packet.sequence_number
        if self._last_seq is not None and not uint16_gt(seq, self._last_seq):
            return False, None
        self._last_seq = seq
        if packet._data:
            tap.emit(packet._data, packet.timestamp, packet.payload_type)
        return False, None


async def _receive_without_decoder(self: RTCRtpReceiver, parameters) -> None:  # type: ignore[no-untyped-def]
    """RTCRtpReceiver.receive() of aiortc 1.16.0 minus the decoder thread."""
    if not self._RTCRtpReceiver__started:  # type: ignore[attr-defined]
        tap: ReceiverTap = self._rooms_tap  # type: ignore[attr-defined]
        codecs = self._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
        for codec in parameters.codecs:
            codecs[codec.payloadType] = codec
            tap.codecs[codec.payloadType] = (codec.mimeType.lower(), codec.clockRate)
        for encoding in parameters.encodings:
            if tap.signalled_ssrc is None and encoding.ssrc:
                tap.signalled_ssrc = encoding.ssrc
            if encoding.rtx:
                self._RTCRtpReceiver__rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc  # type: ignore[attr-defined]
        transport = self._RTCRtpReceiver__transport  # type: ignore[attr-defined]
        transport._register_rtp_receiver(self, parameters)
        # aiortc's router knows the media SSRCs only; a packet of another SSRC goes by payload type,
        # and only if one receiver has that type. The camera and its small encoding are two video
        # m-lines of the same codecs, so every retransmission (RTX) of either was dropped there and
        # no loss on a publisher's uplink was ever repaired (docs/protocol.md, "Link quality").
        for encoding in parameters.encodings:
            if encoding.rtx:
                transport._rtp_router.ssrc_table[encoding.rtx.ssrc] = self
        self._RTCRtpReceiver__rtcp_task = asyncio.ensure_future(self._run_rtcp())  # type: ignore[attr-defined]
        self._RTCRtpReceiver__started = True  # type: ignore[attr-defined]


def install_receiver_tap(receiver: RTCRtpReceiver, kind: str) -> ReceiverTap:
    """Make `receiver` hand complete encoded frames to `tap.on_frame` and never
    decode. Must run before aiortc calls receiver.receive() (i.e. right after
    setRemoteDescription, before the answer is applied). Idempotent."""
    existing = getattr(receiver, "_rooms_tap", None)
    if existing is not None:
        return existing
    if receiver._RTCRtpReceiver__started:  # type: ignore[attr-defined]
        raise HookError("receiver already started: its decoder thread is running")
    tap = ReceiverTap(receiver, kind)
    receiver._rooms_tap = tap  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__jitter_buffer = (  # type: ignore[attr-defined]
        _VideoTapBuffer(tap, receiver) if kind == "video" else _AudioTapBuffer(tap)
    )
    # No REMB towards publishers: aiortc's receive-side estimator timestamps packets on the event
    # loop, so a busy host reads as a congested link and every publisher is held at Chrome's floor
    # (~30 kbit/s, measured). Without it the browser's own loss-based control sets its bitrate,
    # following its own uplink, up to the page's cap (docs/protocol.md, "Link quality").
    receiver._RTCRtpReceiver__remote_bitrate_estimator = None  # type: ignore[attr-defined]
    receiver.receive = types.MethodType(_receive_without_decoder, receiver)  # type: ignore[method-assign]
    return tap


def receiver_tap(receiver: RTCRtpReceiver) -> Optional[ReceiverTap]:
    return getattr(receiver, "_rooms_tap", None)


def receiver_has_decoder_thread(receiver: RTCRtpReceiver) -> bool:
    return receiver._RTCRtpReceiver__decoder_thread is not None  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- send


class PackOnlyEncoder(Encoder):
    """Stands in for aiortc's encoder on a forwarding sender: packetizes encoded
    frames, refuses to encode. Accepts EncodedFrame (the live path) or av.Packet."""

    def __init__(self, mime: str) -> None:
        self.mime = mime.lower()
        self.picture_id = 0
        self.pack_calls = 0
        # What goes towards the viewer, with RTP/SRTP/UDP/IP overhead: the viewer's budget
        # (rooms/adaptation.py) counts retransmissions too.
        self.bytes_out = 0
        self.fresh_bytes = 0  # bytes_out without retransmissions
        self.packets_out = 0
        self.retransmits = 0
        self.retransmits_skipped = 0
        self.hold_retransmits = False  # the viewer's link is over its budget: NACKs make it worse

    def encode(self, frame, force_keyframe=False):  # type: ignore[no-untyped-def]
        raise RuntimeError("a forwarding sender must never encode (got a decoded frame)")

    def pack(self, packet):  # type: ignore[no-untyped-def]
        self.pack_calls += 1
        if isinstance(packet, EncodedFrame):
            data, timestamp = packet.data, packet.pts
        else:  # av.Packet with pts in 1/clock-rate units
            data, timestamp = bytes(packet), int(packet.pts or 0)
        if self.mime == "video/vp8":
            payloads = Vp8Encoder._packetize(data, self.picture_id)
            self.picture_id = (self.picture_id + 1) % (1 << 15)
        elif self.mime == "video/h264":
            payloads = H264Encoder._packetize(H264Encoder._split_bitstream(data))
        else:
            payloads = [data]
        STATS.forwarded_packets += len(payloads)
        self.packets_out += len(payloads)
        size = len(data) + PACKET_OVERHEAD * len(payloads)
        self.fresh_bytes += size
        self.bytes_out += size
        return payloads, timestamp & 0xFFFFFFFF


def install_sender_packer(
    sender: RTCRtpSender, mime: str, on_keyframe_request: Callable[[], None]
) -> PackOnlyEncoder:
    """Make `sender` packetize the EncodedFrames its track returns (never encode)
    and route the viewer's PLI/FIR to `on_keyframe_request`."""
    encoder = PackOnlyEncoder(mime)
    # _next_encoded_frame only creates an encoder when this is None.
    sender._RTCRtpSender__encoder = encoder  # type: ignore[attr-defined]
    # _handle_rtcp_packet calls self._send_keyframe() on PLI and FIR.
    sender._send_keyframe = on_keyframe_request  # type: ignore[method-assign]
    _watch_viewer_rtcp(sender, on_keyframe_request if mime.lower().startswith("video/") else None)
    original_retransmit = sender._retransmit

    async def retransmit(sequence_number: int) -> None:
        if encoder.hold_retransmits:
            encoder.retransmits_skipped += 1
            return
        encoder.retransmits += 1
        encoder.bytes_out += encoder.fresh_bytes // max(encoder.packets_out, 1)  # an average packet
        await original_retransmit(sequence_number)

    sender._retransmit = retransmit  # type: ignore[method-assign]
    return encoder


# --------------------------------------------------------------------------- send, per packet

# Outgoing RTP packets a forwarding leg keeps to answer its viewer's NACKs (~3 s of 600 kbit/s
# video). A power of two: indexed by the outgoing sequence number.
HISTORY_PACKETS = 512
SR_REMEMBERED = 16  # sender reports a leg can match a late receiver report to (8-16 s of them)
MIN_RESEND_INTERVAL = 0.05  # s: a packet is resent at most this often, even on a fast link
_NTP_OFFSET = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)
_URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
_URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
_URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
_pack_header = struct.Struct("!BBHLL").pack
_srtp_ffi, _srtp_lib = _srtp_binding.ffi, _srtp_binding.lib
_SRTP_TRAILER = 144  # pylibsrtp's SRTP_MAX_TRAILER_LEN (checked: check_hooks)
_pack_rtx_header = struct.Struct("!BBH4sL").pack


def abs_send_time(now: float) -> bytes:
    """The 3 bytes of the abs-send-time header extension for time.time() `now` (6.18 s fixed point)."""
    return ((int((now + _NTP_OFFSET) * 262144)) & 0xFFFFFF).to_bytes(3, "big")


class PacketSender:
    """One forwarding sender on the packet path: its outgoing SSRC, sequence numbers and
    timestamps, the header extensions its viewer negotiated, SRTP and the socket of its
    transport, the retransmission buffer its viewer's NACKs are answered from (RTX where
    negotiated) and the figures of its sender reports.

    The sender itself (aiortc's RTCRtpSender) stays: it negotiates, registers its SSRC with
    the transport so the viewer's RTCP reaches it (receiver reports, NACK, PLI/FIR, REMB), and
    measures the round trip; its RTP loop is replaced by one that never reads a track, and its
    RTCP loop by one whose sender reports describe what this object sent. Everything here runs
    synchronously on the event loop, called by the producer's packet hook: no task, no queue."""

    __slots__ = (
        "sender", "kind", "clock_rate", "ssrc", "rtx_ssrc", "pt", "rtx_pt", "ready", "next_seq",
        "last_ts", "last_wall", "sent_any", "octet_count", "packets_out", "rtx_bytes", "holes",
        "retransmits", "retransmits_skipped", "retransmits_repeated", "hold_retransmits", "_rtx_seq",
        "rtt", "_sr_times", "_protect", "_history", "_resent_at", "_abs", "_ext_head", "_ext_tail", "_ext_level", "_level_tail", "_level_id", "_first", "_dtls",
        "_ice", "_pair", "_sendto", "_addr", "_on_ready",
    )

    def __init__(self, sender: RTCRtpSender, kind: str, clock_rate: int,
                 on_ready: Optional[Callable[[], None]] = None) -> None:
        self.sender = sender
        self.kind = kind
        self.clock_rate = clock_rate
        self.ssrc = sender._ssrc
        self.rtx_ssrc = sender._rtx_ssrc
        self.pt = 0
        self.rtx_pt: Optional[int] = None
        self.ready = False  # negotiated and connected: packets can go
        self.next_seq = random.getrandbits(16) % 32768  # as aiortc: far from a wrap (SRTP)
        self.last_ts = random.getrandbits(32)  # outgoing timestamp of the latest fresh packet
        self.last_wall = 0.0                   # time.time() it was sent
        self.sent_any = False
        # Packets sent (retransmissions not counted) and their payload bytes: the sender report's
        # figures, and with rtx_bytes what the viewer's budget counts (bytes_out).
        self.packets_out = 0
        self.octet_count = 0
        self.rtx_bytes = 0
        # Outgoing numbers skipped because the packet never reached the server (lost on the
        # publisher's uplink; a late arrival fills its number and takes one off). The viewer
        # counts them as lost: ViewerFeedback takes them out, so one party's weak uplink does not
        # read as every viewer's congested downlink (the lab saw 96 % "loss" on healthy viewers).
        self.holes = 0
        self.retransmits = 0
        self.retransmits_skipped = 0
        self.retransmits_repeated = 0  # NACKs for a packet resent less than a round trip ago
        self.hold_retransmits = False
        self._rtx_seq = random.getrandbits(16) % 32768
        self._history: list[Optional[bytes]] = [None] * HISTORY_PACKETS
        self._resent_at: list[float] = [0.0] * HISTORY_PACKETS
        # The round trip from the viewer's receiver reports on this leg's sender reports, each
        # report matched to the one it answers: aiortc keeps only the latest, so on a link that
        # queues for longer than the report interval (1.6 s on 150 kbit/s with a 30 KB queue) it
        # never found a match and the round trip stayed unknown, just when it says most.
        self.rtt: Optional[float] = None
        self._sr_times: dict[int, float] = {}   # middle 32 bits of a sender report's NTP time -> sent
        self._ext_head = b""
        self._ext_tail = b""
        self._abs = False
        self._ext_level = b""
        self._level_tail = b""
        self._level_id = b""
        self._first = 0x80
        self._dtls = sender.transport
        self._ice = None
        self._pair = None
        self._sendto = None
        self._addr = None
        self._on_ready = on_ready
        self._protect: Optional[Callable[[bytes], bytes]] = None

    @property
    def bytes_out(self) -> int:
        """What went towards the viewer with RTP/SRTP/UDP/IP overhead, retransmissions included
        (the viewer's budget, rooms/adaptation.py; the same name as PackOnlyEncoder's)."""
        return self.octet_count + PACKET_OVERHEAD * self.packets_out + self.rtx_bytes

    def configure(self, parameters) -> None:  # type: ignore[no-untyped-def]
        """From the RTCRtpSendParameters aiortc starts the sender with: payload types and the
        header extensions (one-byte form, RFC 8285) this viewer negotiated."""
        self.pt = parameters.codecs[0].payloadType
        for codec in parameters.codecs:
            if is_rtx(codec) and codec.parameters.get("apt") == self.pt:
                self.rtx_pt = codec.payloadType
                break
        ids = {ext.uri: ext.id for ext in parameters.headerExtensions}
        elements = b""
        mid = parameters.muxId
        if mid and ids.get(_URI_MID) and len(mid) <= 16:
            elements += bytes([ids[_URI_MID] << 4 | (len(mid) - 1)]) + mid.encode()
        abs_id = ids.get(_URI_ABS_SEND_TIME)
        self._abs = bool(abs_id)
        if abs_id:
            elements += bytes([abs_id << 4 | 2])  # its 3 bytes are filled per packet
        size = len(elements) + (3 if abs_id else 0)

        def head(n: int) -> tuple[bytes, bytes]:
            words = (n + 3) // 4
            return b"\xbe\xde" + words.to_bytes(2, "big") + elements, bytes(words * 4 - n)

        if size:
            self._first = 0x90
            self._ext_head, self._ext_tail = head(size)
        level_id = ids.get(_URI_AUDIO_LEVEL) if self.kind == "audio" else None
        if level_id:
            # The publisher's audio level goes on as it came (the frame path dropped it).
            self._ext_level, self._level_tail = head(size + 2)
            self._level_id = bytes([level_id << 4])

    def _resolve(self):  # type: ignore[no-untyped-def]
        """The socket of the transport's selected candidate pair (aioice), or None."""
        dtls = self.sender.transport  # the sender's own, should aiortc have given it another (bundling)
        if dtls is not self._dtls:
            self._dtls, self._ice, self._pair, self._protect = dtls, None, None, None
        if dtls._state is not _DtlsState.CONNECTED:
            return None
        ice = self._ice
        if ice is None:
            ice = self._ice = self._dtls.transport._connection
        pair = ice._nominated.get(1)
        if pair is None:
            return None
        if self._protect is None:
            self._protect = _srtp_protector(self._dtls._tx_srtp)
        if pair is not self._pair:
            self._pair = pair
            self._addr = pair.remote_addr
            protocol = pair.protocol
            if type(protocol).send_data is _ice.StunProtocol.send_data and protocol.transport is not None:
                self._sendto = protocol.transport.sendto
            else:  # a relayed (TURN) pair: its send is a coroutine (the server never uses TURN)
                self._sendto = lambda data, addr, ice=ice: _spawn(ice.sendto(data, 1))
        return self._sendto

    def send(self, seq: int, ts: int, marker: int, payload: bytes, abs3: bytes, level: Optional[int],
             now: float, fresh: bool) -> None:
        """Send one RTP packet with this leg's SSRC and the given (rewritten) sequence number and
        timestamp; the payload goes as it came. `fresh`: the newest packet so far (not a late one
        filling a gap): it advances the numbering and the sender report."""
        if not self._abs:
            abs3 = b""
        if level is not None and self._ext_level:
            ext = self._ext_level + abs3 + self._level_id + bytes((level,)) + self._level_tail
            first = 0x90
        else:
            ext = self._ext_head + abs3 + self._ext_tail if self._ext_head else b""
            first = self._first
        data = _pack_header(first, (marker << 7) | self.pt, seq, ts, self.ssrc) + ext + payload
        slot = seq % HISTORY_PACKETS
        self._history[slot] = data
        self._resent_at[slot] = 0.0  # a new packet in the slot: not resent yet
        self.packets_out += 1
        self.octet_count += len(payload)
        if fresh:
            skipped = (seq - self.next_seq) & 0xFFFF
            if skipped < 0x8000 and self.sent_any:
                self.holes += skipped
            self.next_seq = (seq + 1) & 0xFFFF
            self.last_ts = ts
            self.last_wall = now
            self.sent_any = True
        elif self.holes:
            self.holes -= 1  # a late packet fills the number kept for it
        sendto = self._sendto
        if sendto is None:
            sendto = self._resolve()
            if sendto is None:
                return
        try:
            sendto(self._protect(data), self._addr)  # type: ignore[misc]
        except (OSError, AttributeError, pylibsrtp.Error):
            self._sendto = self._pair = None  # closing underneath us; the next packet looks again
        # (aiortc's own counters of the DTLS transport are not kept: nothing of ours reads them)

    def next_timestamp(self, now: float) -> int:
        """The outgoing timestamp a packet sent at `now` continues the leg's timeline with: the
        latest one advanced by the time passed (at least one tick)."""
        if not self.sent_any:
            return self.last_ts
        return (self.last_ts + max(1, int((now - self.last_wall) * self.clock_rate))) & 0xFFFFFFFF

    def retransmit(self, seq: int) -> None:
        """The viewer NACKed outgoing packet `seq`: send it again from the buffer (as RTX when
        negotiated). Not while its link is over budget (more would only lengthen the queue), and
        not again within a round trip of the last resend: Chrome repeats a NACK every round trip
        while the packet is missing, and on a queued narrow link each repeat answered put one
        more copy into the queue (the lab saw 5 Mbit/s offered to a 150 kbit/s link), as libwebrtc's
        own sender knows (it ignores a NACK for a packet resent within the round trip)."""
        slot = seq % HISTORY_PACKETS
        data = self._history[slot]
        if data is None or ((data[2] << 8) | data[3]) != seq:
            return
        if self.hold_retransmits:
            self.retransmits_skipped += 1
            return
        now = time.monotonic()
        if now - self._resent_at[slot] < max(self.rtt or 0.0, MIN_RESEND_INTERVAL):
            self.retransmits_repeated += 1
            return
        self._resent_at[slot] = now
        self.retransmits += 1
        if self.rtx_pt is not None:
            head = 12 + (4 + 4 * ((data[14] << 8) | data[15]) if data[0] & 0x10 else 0)
            data = _pack_rtx_header(data[0], (data[1] & 0x80) | self.rtx_pt, self._rtx_seq, data[4:8],
                                    self.rtx_ssrc) + data[12:head] + data[2:4] + data[head:]
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        self.rtx_bytes += len(data) - 12 + PACKET_OVERHEAD
        sendto = self._resolve()
        if sendto is not None:
            try:
                sendto(self._protect(data), self._addr)  # type: ignore[misc]
            except (OSError, AttributeError, pylibsrtp.Error):
                pass

    def on_report(self, now: float, lsr: int, dlsr: int) -> None:
        """A receiver report on this leg (`now`: time.time()): the round trip from the sender
        report it answers (RFC 3550 6.4.1), smoothed as aiortc does."""
        sent = self._sr_times.get(lsr)
        if sent is None or not dlsr:
            return
        rtt = now - sent - dlsr / 65536
        if rtt < 0:
            rtt = 0.0
        self.rtt = rtt if self.rtt is None else 0.875 * self.rtt + 0.125 * rtt

    def sender_report(self, now: float) -> RtcpSrPacket:
        ntp = int((now + _NTP_OFFSET) * (1 << 32))
        times = self._sr_times
        times[(ntp >> 16) & 0xFFFFFFFF] = now
        if len(times) > SR_REMEMBERED:
            del times[next(iter(times))]
        return RtcpSrPacket(ssrc=self.ssrc, sender_info=RtcpSenderInfo(
            ntp_timestamp=ntp, rtp_timestamp=self.next_timestamp(now) if self.sent_any else self.last_ts,
            packet_count=self.packets_out & 0xFFFFFFFF, octet_count=self.octet_count & 0xFFFFFFFF))


def _srtp_protector(session: "pylibsrtp.Session") -> Callable[[bytes], bytes]:
    """session.protect without pylibsrtp's checks and per-call allocation (its buffer, its
    libsrtp context, one length cell kept): a third of the cost of protecting a packet. Falls
    back to session.protect for a packet that would not fit its buffer."""
    srtp, cdata, buffer = session._srtp[0], session._cdata, session._buffer
    room = len(cdata) - _SRTP_TRAILER
    length = _srtp_ffi.new("int *")
    protect = _srtp_lib.srtp_protect

    def protect_packet(data: bytes) -> bytes:
        n = len(data)
        if n > room:
            return session.protect(data)
        length[0] = n
        buffer[0:n] = data
        if protect(srtp, cdata, length):
            raise pylibsrtp.Error("srtp_protect failed")
        return buffer[0:length[0]]

    return protect_packet


_spawned: set[asyncio.Future] = set()


def _spawn(coro) -> None:  # type: ignore[no-untyped-def]
    task = asyncio.ensure_future(coro)
    _spawned.add(task)
    task.add_done_callback(_spawned.discard)


async def _packet_send(self: RTCRtpSender, parameters) -> None:  # type: ignore[no-untyped-def]
    """RTCRtpSender.send on the packet path: note what was negotiated, then aiortc's own."""
    if not self._RTCRtpSender__started:  # type: ignore[attr-defined]
        self._rooms_packets.configure(parameters)  # type: ignore[attr-defined]
    await RTCRtpSender.send(self, parameters)


async def _packet_run_rtp(self: RTCRtpSender, codec) -> None:  # type: ignore[no-untyped-def]
    """Replaces RTCRtpSender._run_rtp on the packet path: reads no track, encodes and packs
    nothing (the producer's packet hook sends), and ends when the sender stops."""
    out: PacketSender = self._rooms_packets  # type: ignore[attr-defined]
    self._RTCRtpSender__rtp_started.set()  # type: ignore[attr-defined]
    out.ready = True
    if out._on_ready is not None:
        callback, out._on_ready = out._on_ready, None
        callback()
    try:
        await asyncio.get_running_loop().create_future()
    except asyncio.CancelledError:
        pass
    finally:
        out.ready = False
        self._RTCRtpSender__rtp_exited.set()  # type: ignore[attr-defined]


async def _packet_run_rtcp(self: RTCRtpSender) -> None:
    """Replaces RTCRtpSender._run_rtcp on the packet path (same timing, same packets): the sender
    report maps the leg's own timeline to the wall clock, from what the leg really sent, so a
    viewer's browser keeps a participant's audio and video in sync."""
    out: PacketSender = self._rooms_packets  # type: ignore[attr-defined]
    self._RTCRtpSender__rtcp_started.set()  # type: ignore[attr-defined]
    cname = self._RTCRtpSender__cname  # type: ignore[attr-defined]
    try:
        while True:
            await asyncio.sleep(0.5 + random.random())
            if not out.sent_any:
                continue
            now = time.time()
            report = out.sender_report(now)
            packets: list = [report]
            # aiortc matches receiver reports to its latest sender report (the leg matches them
            # to any recent one itself: PacketSender.on_report).
            self._RTCRtpSender__lsr = (report.sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF  # type: ignore[attr-defined]
            self._RTCRtpSender__lsr_time = now  # type: ignore[attr-defined]
            if cname is not None:
                packets.append(RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=out.ssrc, items=[(1, cname.encode("utf8"))])]))
            await self._send_rtcp(packets)
    except asyncio.CancelledError:
        pass
    await self._send_rtcp([RtcpByePacket(sources=[out.ssrc])])
    self._RTCRtpSender__rtcp_exited.set()  # type: ignore[attr-defined]


def install_packet_sender(sender: RTCRtpSender, kind: str, clock_rate: int,
                          on_keyframe_request: Callable[[], None],
                          on_ready: Optional[Callable[[], None]] = None) -> PacketSender:
    """Make `sender` a leg of the packet path (see PacketSender): before it starts, i.e. right
    after addTransceiver. The viewer's PLI/FIR go to `on_keyframe_request`, its NACKs are
    answered from the leg's buffer; `on_ready` runs once the leg can send."""
    if sender._RTCRtpSender__started:  # type: ignore[attr-defined]
        raise HookError("sender already started")
    out = PacketSender(sender, kind, clock_rate, on_ready)
    sender._rooms_packets = out  # type: ignore[attr-defined]
    sender._RTCRtpSender__encoder = _NoEncoder()  # type: ignore[attr-defined]
    sender.send = types.MethodType(_packet_send, sender)  # type: ignore[method-assign]
    sender._run_rtp = types.MethodType(_packet_run_rtp, sender)  # type: ignore[method-assign]
    sender._run_rtcp = types.MethodType(_packet_run_rtcp, sender)  # type: ignore[method-assign]
    sender._send_keyframe = on_keyframe_request  # type: ignore[method-assign]
    _watch_viewer_rtcp(sender, on_keyframe_request if kind == "video" else None)

    async def retransmit(sequence_number: int) -> None:
        out.retransmit(sequence_number)

    sender._retransmit = retransmit  # type: ignore[method-assign]
    return out


class _NoEncoder(Encoder):
    """Stands in for an encoder on a packet-path sender, which never has one."""

    def encode(self, frame, force_keyframe=False):  # type: ignore[no-untyped-def]
        raise RuntimeError("a forwarding sender must never encode")

    def pack(self, packet):  # type: ignore[no-untyped-def]
        raise RuntimeError("a packet-path sender packs nothing: packets are forwarded as they are")


def sender_packets(sender: RTCRtpSender) -> Optional[PacketSender]:
    return getattr(sender, "_rooms_packets", None)


# A viewer's receiver reports come about once a second; this long without any RTCP from it
# means its link was down (or it changed network): when RTCP comes back, its decoder has lost
# frames, so ask the publisher for a keyframe at once rather than wait for the viewer's own
# NACKs to give up (seen in the lab: ~3 s after a 6 s outage without this).
VIEWER_SILENCE = 2.0


def _watch_viewer_rtcp(sender: RTCRtpSender, on_return: Optional[Callable[[], None]]) -> None:
    original = sender._handle_rtcp_packet
    sender._rooms_last_rtcp = time.monotonic()  # type: ignore[attr-defined]

    feedback = sender._rooms_feedback = ViewerFeedback()  # type: ignore[attr-defined]

    async def handle(packet):  # type: ignore[no-untyped-def]
        now = time.monotonic()
        if on_return is not None and now - sender._rooms_last_rtcp > VIEWER_SILENCE:  # type: ignore[attr-defined]
            on_return()
        sender._rooms_last_rtcp = now  # type: ignore[attr-defined]
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc == sender._ssrc:
                    out = getattr(sender, "_rooms_packets", None)
                    if out is not None:
                        out.on_report(time.time(), report.lsr, report.dlsr)
                    feedback.report(now, report.packets_lost, report.highest_sequence,
                                    out.holes if out is not None else 0)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                bitrate, ssrcs = None, []
            if sender._ssrc in ssrcs:
                feedback.remb, feedback.remb_at = bitrate, now
        await original(packet)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


LOSS_WINDOW = 0.9  # s: a viewer's loss is measured over reports at least this far apart
# A window longer than this spans a pause of the stream (Chrome stops reporting a stream 8 s
# after its last packet) and mixes what the link did before it into what it does now: the lab
# saw a viewer's resumed video cut again by the losses of the narrow link it had just left.
# Audio reports come every 2.5-7.5 s, so this must stay above that.
LOSS_STALE = 8.0


class ViewerFeedback:
    """What a viewer's receiver said lately about one forwarding sender's stream."""

    __slots__ = ("loss", "loss_at", "loss_from", "prev_loss", "received_pps", "remb", "remb_at", "_anchor")

    def __init__(self) -> None:
        self.loss = 0.0                    # fraction lost over the latest LOSS_WINDOW of reports
        self.loss_at: Optional[float] = None
        self.loss_from: Optional[float] = None  # when that window began
        self.received_pps = 0.0            # packets per second that reached the viewer in that window
        self.prev_loss: Optional[float] = None  # the window before it (None: this is the first)
        self.remb: Optional[int] = None    # receiver-estimated maximum bitrate (bit/s), whole connection
        self.remb_at: Optional[float] = None
        # (time, cumulative lost, highest seq, numbers the server skipped so far)
        self._anchor: Optional[tuple[float, int, int, int]] = None

    def report(self, now: float, lost_total: int, highest_seq: int, holes: int = 0) -> None:
        """A receiver report about this stream arrived: its cumulative packets lost and extended
        highest sequence number; `holes`: how many outgoing numbers the server has skipped so far
        (PacketSender.holes: lost before the server, not on this viewer's link). The loss is
        taken from these over at least LOSS_WINDOW, not from the report's own fraction: Chrome
        sends a report with every NACK, so that fraction often covers two or three packets (one
        lost of two reads 50 %, seen on a 3 % lossy link)."""
        anchor = self._anchor
        if anchor is None:
            self._anchor = (now, lost_total, highest_seq, holes)
            return
        expected = (highest_seq - anchor[2]) & 0xFFFFFFFF
        if now - anchor[0] < LOSS_WINDOW and expected < 0x80000000:
            return
        self._anchor = (now, lost_total, highest_seq, holes)
        if expected == 0 or expected >= 0x80000000 or now - anchor[0] > LOSS_STALE:
            return  # nothing new, the stream started over, or the window spans a pause
        upstream = max(holes - anchor[3], 0)
        if expected <= upstream:
            return  # all it missed was never sent (the publisher's loss): nothing about this link
        loss = min(max((lost_total - anchor[1] - upstream) / (expected - upstream), 0.0), 1.0)
        self.prev_loss = self.loss if self.loss_at is not None else None
        self.loss, self.loss_at, self.loss_from = loss, now, anchor[0]
        self.received_pps = max(expected - (lost_total - anchor[1]), 0) / (now - anchor[0])


def sender_feedback(sender: RTCRtpSender) -> Optional[ViewerFeedback]:
    return getattr(sender, "_rooms_feedback", None)


def sender_packet_bytes(sender: RTCRtpSender) -> Optional[float]:
    """The mean size of what the leg sent per packet, overhead included (None: nothing yet, or
    the frame path): with ViewerFeedback.received_pps, what reached the viewer."""
    out = getattr(sender, "_rooms_packets", None)
    if out is None or not out.packets_out:
        return None
    return out.octet_count / out.packets_out + PACKET_OVERHEAD


def sender_rtt(sender: RTCRtpSender) -> Optional[float]:
    """The smoothed round trip (s) from the viewer's reports on our sender reports: the leg's
    own on the packet path (PacketSender.on_report), aiortc's on the frame path."""
    out = getattr(sender, "_rooms_packets", None)
    if out is not None:
        return out.rtt
    return sender._RTCRtpSender__rtt  # type: ignore[attr-defined]


def receiver_counts(receiver: RTCRtpReceiver) -> tuple[int, int]:
    """(packets expected, packets received) so far on the receiver's media streams (not RTX)."""
    rtx = set(receiver._RTCRtpReceiver__rtx_ssrc)  # type: ignore[attr-defined]
    expected = received = 0
    for ssrc, stream in receiver._RTCRtpReceiver__remote_streams.items():  # type: ignore[attr-defined]
        if ssrc not in rtx and stream.max_seq is not None:
            expected += stream.packets_expected
            received += stream.packets_received
    return expected, received


def sender_last_rtcp(sender: RTCRtpSender) -> Optional[float]:
    """time.monotonic() of the latest RTCP from this sender's viewer (None: not a forwarding sender)."""
    return getattr(sender, "_rooms_last_rtcp", None)


def sender_encoder(sender: RTCRtpSender) -> Optional[Encoder]:
    return sender._RTCRtpSender__encoder  # type: ignore[attr-defined]


def set_sender_stream_id(sender: RTCRtpSender, stream_id: str) -> None:
    """The msid stream id the viewer sees (event.streams[0].id): the publisher's
    participant id, so a browser can group a participant's audio and video."""
    sender._stream_id = stream_id


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    return sender._ssrc, sender._rtx_ssrc


# --------------------------------------------------------------------------- codecs

# Publish-side preference: VP8 is the safest with browsers; H.264 when a publisher
# offers nothing else. Audio: Opus.
VIDEO_PREFERENCE = ("video/vp8", "video/h264")
AUDIO_PREFERENCE = ("audio/opus",)


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    return list(transceiver._codecs)


def pin_single_codec(transceiver: RTCRtpTransceiver) -> Optional[RTCRtpCodecParameters]:
    """After setRemoteDescription(offer) on a publish connection: keep exactly one
    media codec (+ its RTX) so the answer lets the publisher send only that codec
    and every consumer can be forced to the same one. Returns the chosen codec."""
    common = transceiver._codecs
    media = [c for c in common if not is_rtx(c)]
    if not media:
        return None
    preference = VIDEO_PREFERENCE if transceiver.kind == "video" else AUDIO_PREFERENCE
    chosen = media[0]
    for mime in preference:
        match = next((c for c in media if c.mimeType.lower() == mime), None)
        if match is not None:
            chosen = match
            break
    rtx = [c for c in common if is_rtx(c) and c.parameters.get("apt") == chosen.payloadType]
    # createAnswer() emits transceiver._codecs as is.
    transceiver._codecs = [chosen] + rtx[:1]
    # A later re-offer recomputes _codecs through these preferences.
    transceiver.setCodecPreferences(codec_capabilities(chosen))
    return chosen


def codec_capabilities(codec: RTCRtpCodecParameters) -> list[RTCRtpCodecCapability]:
    """The setCodecPreferences() list that forces exactly `codec` (+ RTX for video)."""
    kind = codec.mimeType.split("/")[0].lower()
    caps = get_capabilities(kind).codecs
    out = [
        c
        for c in caps
        if c.mimeType.lower() == codec.mimeType.lower()
        and c.parameters == codec.parameters
        and c.clockRate == codec.clockRate
    ][:1]
    if not out:
        raise HookError(f"aiortc cannot send {codec.mimeType} {codec.parameters}")
    if kind == "video":
        out += [c for c in caps if is_rtx(c)][:1]
    return out


# --- ICE consent freshness that survives long round trips (RFC 7675) -------------------------------

CONSENT_RETRANSMISSIONS = 4  # one check's transaction: sent at 0, 0.5, 1.5, 3.5 and 7.5 s


async def _query_consent(self: _ice.Connection) -> None:  # type: ignore[no-untyped-def]
    """Replaces aioice's Connection.query_consent (see the module docstring)."""
    assert self.remote_password is not None
    interval = _ice.CONSENT_INTERVAL
    timeout = interval * _ice.CONSENT_FAILURES  # 30 s with aioice's 5 s x 6
    last_answer = time.monotonic()
    checks: set[asyncio.Future] = set()

    async def check(pair) -> None:
        nonlocal last_answer
        request = self.build_request(pair, nominate=False)
        try:
            await pair.protocol.request(request, pair.remote_addr,
                                        integrity_key=self.remote_password.encode("utf8"),
                                        retransmissions=CONSENT_RETRANSMISSIONS)
            last_answer = time.monotonic()
        except _stun.TransactionError:
            pass
        except (ConnectionError, OSError):
            pass  # the socket went away: the timeout below decides

    try:
        while True:
            await asyncio.sleep(interval * (0.8 + 0.4 * random.random()))
            for pair in list(self._nominated.values()):
                task = asyncio.ensure_future(check(pair))
                checks.add(task)
                task.add_done_callback(checks.discard)
            if time.monotonic() - last_answer >= timeout:
                logger.info("ICE consent expired: no answer for %.0f s", time.monotonic() - last_answer)
                self._query_consent_task = None
                return await self.close()
    finally:
        for task in list(checks):
            task.cancel()


def install_consent_freshness() -> None:
    _query_consent.aioice_original = _AIOICE_QUERY_CONSENT  # type: ignore[attr-defined]
    _ice.Connection.query_consent = _query_consent  # type: ignore[method-assign]


install_consent_freshness()


# --- host candidates inside a configured UDP port range --------------------------------------------

_media_ports: Optional[tuple[int, int]] = None
_next_port = 0


def set_media_ports(ports: Optional[tuple[int, int]]) -> None:
    """Bind every host candidate of this process inside [low, high] (None: any port)."""
    global _media_ports
    _media_ports = ports


def check_media_ports(ports: tuple[int, int], host: str = "0.0.0.0") -> None:
    """Raise OSError unless at least one port of the range can be bound now."""
    import socket as _socket
    for port in range(ports[0], ports[1] + 1):
        with _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM) as s:
            try:
                s.bind((host, port))
                return
            except OSError:
                continue
    raise OSError(f"every UDP port of {ports[0]}-{ports[1]} is in use")


async def _bind_in_range(loop, factory, address: str):  # type: ignore[no-untyped-def]
    global _next_port
    low, high = _media_ports  # type: ignore[misc]
    size = high - low + 1
    for i in range(size):
        port = low + (_next_port + i) % size
        try:
            transport, protocol = await loop.create_datagram_endpoint(factory, local_addr=(address, port))
        except OSError:
            continue
        _next_port = (port - low + 1) % size
        return transport, protocol
    raise OSError(f"no free UDP port left in the media range {low}-{high}")


async def _component_candidates(self, component: int, addresses: list[str], timeout: int = 5):  # type: ignore[no-untyped-def]
    """aioice's get_component_candidates, with host sockets bound inside the media range."""
    if _media_ports is None:
        return await _AIOICE_COMPONENT_CANDIDATES(self, component, addresses, timeout)
    loop = asyncio.get_running_loop()
    candidates = []
    for address in addresses:
        try:
            transport, protocol = await _bind_in_range(loop, lambda: _ice.StunProtocol(self), address)
        except OSError as exc:
            logger.warning("ICE: cannot bind %s in the media range: %s", address, exc)
            continue
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(_socket_mod.SOL_SOCKET, _socket_mod.SO_RCVBUF, _turn.UDP_SOCKET_BUFFER_SIZE)
        host, port = transport.get_extra_info("sockname")[:2]
        protocol.local_candidate = _ice.Candidate(
            foundation=_ice.candidate_foundation("host", "udp", host), component=component, transport="udp",
            priority=_ice.candidate_priority(component, "host"), host=host, port=port, type="host")
        candidates.append(protocol.local_candidate)
        self._protocols.append(protocol)
    # TURN relays as aioice makes them (no host addresses left for it: no unranged sockets).
    return candidates + await _AIOICE_COMPONENT_CANDIDATES(self, component, [], timeout)


_component_candidates.aioice_original = _AIOICE_COMPONENT_CANDIDATES  # type: ignore[attr-defined]
_ice.Connection.get_component_candidates = _component_candidates  # type: ignore[method-assign]


if __name__ == "__main__":  # pragma: no cover
    if "--fingerprints" in sys.argv:
        for name, value in current_fingerprints().items():
            print(f'    "{name}": "{value}",')
    else:
        check_hooks()
        asyncio.run(probe_hooks())
        print(f"aiortc {aiortc.__version__}: hooks OK")
