"""A participant's client over the real socket.io signaling: python-socketio + aiortc peers."""
from __future__ import annotations

import asyncio
import collections
from typing import Any

import socketio
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket

from tests.rooms.clients import EncodedTrack, client_configuration


class Peer:
    def __init__(self, base_url: str, token: str, media=None):
        self.base_url = base_url
        self.token = token
        self.media = media
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: dict[str, list] = collections.defaultdict(list)
        self.state: dict | None = None
        self.pub: RTCPeerConnection | None = None
        self.sub = RTCPeerConnection(client_configuration())
        self.tracks: dict[str, dict] = {}
        self.decoded: collections.Counter = collections.Counter()  # (kind, publisher id) -> frames
        self._tasks: list[asyncio.Task] = []
        self.me: dict | None = None
        self.sub.on("track", self._on_track)
        for name in ("room.state", "rtc.offer", "chat.message", "lobby.waiting", "removed", "session.ended",
                     "help.requested", "muted", "recording.consent_request", "recording.refused"):
            self.sio.on(name, self._recorder(name))

    def _recorder(self, name):
        async def record(data=None):
            self.events[name].append(data)
            if name == "room.state":
                self.state = data
            elif name == "rtc.offer":
                self._tasks.append(asyncio.ensure_future(self._answer(data)))
        return record

    async def connect(self) -> None:
        await self.sio.connect(self.base_url, socketio_path="socket.io", transports=["websocket"])

    async def call(self, event: str, data: Any = None, timeout: float = 10) -> dict:
        return await self.sio.call(event, data if data is not None else {}, timeout=timeout)

    async def join(self, *, meet_steps: bool = True) -> dict:
        """Join; with meet_steps, answer the procedure steps owed first the way a real client does
        (agree to mediate online, acknowledge the notices shown), then join again (CONTRACT.md)."""
        if not self.sio.connected:
            await self.connect()
        for _ in range(4):
            ack = await self.call("join", {"token": self.token})
            code = None if ack.get("ok") else ack["error"]["code"]
            if meet_steps and code == "consent_required":
                assert (await self.call("consent.online", {"agree": True}))["ok"]
            elif meet_steps and code == "notice_required":
                ids = [n["id"] for n in ack["error"]["notices"]]
                assert (await self.call("notice.ack", {"notices": ids}))["ok"]
            else:
                break
        if ack.get("ok"):
            self.me = ack["participant"]
        return ack

    async def publish(self, video: bool = True, audio: bool = True) -> dict:
        self.pub = RTCPeerConnection(client_configuration())
        if video:
            track = EncodedTrack("video", self.media.vp8)
            sender = self.pub.addTransceiver(track, direction="sendonly").sender
            self._honour_keyframe_requests(sender, track)
        if audio:
            self.pub.addTransceiver(EncodedTrack("audio", self.media.opus), direction="sendonly")
        await self.pub.setLocalDescription(await self.pub.createOffer())
        ack = await self.call("rtc.offer", {"sdp": self.pub.localDescription.sdp, "type": "offer"})
        if ack.get("ok"):
            await self.pub.setRemoteDescription(RTCSessionDescription(sdp=ack["sdp"], type=ack["type"]))
        return ack

    @staticmethod
    def _honour_keyframe_requests(sender, track) -> None:
        # The pre-encoded track stands in for an encoder: it must answer PLI/FIR as one would.
        original = sender._handle_rtcp_packet

        async def handle(packet):
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                track.request_keyframe()
            await original(packet)

        sender._handle_rtcp_packet = handle

    async def _answer(self, offer: dict) -> None:
        await self.sub.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
        for row in offer.get("tracks", []):
            self.tracks[row["mid"]] = row
        await self.sub.setLocalDescription(await self.sub.createAnswer())
        ack = await self.call("rtc.answer", {"sdp": self.sub.localDescription.sdp, "type": "answer"})
        self.events["answer_acks"].append(ack)

    def _on_track(self, track) -> None:
        transceiver = next(t for t in self.sub.getTransceivers() if t.receiver.track is track)
        self._tasks.append(asyncio.ensure_future(self._read(track, transceiver.mid)))

    async def _read(self, track, mid) -> None:
        try:
            while True:
                await track.recv()
                row = self.tracks.get(mid) or {}
                self.decoded[(track.kind, row.get("participant_id"))] += 1
        except Exception:  # noqa: BLE001 - the track ended
            pass

    def frames_from(self, publisher_id: str, kind: str = "video") -> int:
        return self.decoded[(kind, publisher_id)]

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self.sio.connected:
            await self.sio.disconnect()
        if self.pub:
            await self.pub.close()
        await self.sub.close()


async def admitted(base_url: str, media, mediator: "Peer", token: str) -> "Peer":
    """A participant who joins, is let in by the mediator if they wait in the lobby, and publishes."""
    peer = Peer(base_url, token, media)
    ack = await peer.join()
    assert ack["ok"], ack
    if ack["in_lobby"]:
        assert (await mediator.call("lobby.admit", {"participant_id": peer.me["id"]}))["ok"]
    assert (await peer.publish())["ok"]
    return peer
