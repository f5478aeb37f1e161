"""A participant's client over the real socket.io signaling: python-socketio + aiortc peers."""
from __future__ import annotations

import asyncio
import collections
from typing import Any

import socketio
from aiortc import (RTCBundlePolicy, RTCConfiguration, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnection,
                    RTCSessionDescription)
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket

from tests.rooms.clients import EncodedTrack, client_configuration


class Peer:
    """With `rejoin`, behaves like the browser client when its node goes away: reconnects through
    the deployment (the entry URL, then the other nodes it knows), joins again and republishes."""

    EVENTS = ("room.state", "rtc.offer", "chat.message", "lobby.waiting", "removed", "session.ended",
              "help.requested", "muted", "recording.consent_request", "recording.refused", "room.moved",
              "device.admitted", "device.denied",
              # room tools (signaling/room_tools.py, the transcript in signaling/procedure_events.py)
              "lobby.message", "hand.raised", "released", "caucus.broadcast", "caucus.knocked", "speaker.active",
              "transcript.entry", "transcript.deleted", "transcript.review", "transcript.signoff",
              "transcript.finalized", "screen.stopped")

    def __init__(self, base_url: str, token: str, media=None, *, rejoin: bool = False, fallback: tuple = (),
                 relay_only: bool = False, resume: str | None = None):
        """relay_only: like a browser behind a firewall, use only the TURN relay the join ack names
        (its ice_servers, iceTransportPolicy "relay"); the connections are made after joining.
        resume: the secret an earlier join on "this device" returned (the page keeps it); without
        it a new Peer is a second device for the server."""
        self.resume = resume
        self.base_url = base_url      # the node this client talks to now
        self.entry_url = base_url     # where it came in
        self.fallback = list(fallback)
        self.token = token
        self.media = media
        self.rejoin = rejoin
        self.rejoins = 0
        self.redirects: list[str] = []
        self.node: dict | None = None
        self.nodes: list[str] = []
        self.closing = False
        self._rejoining: asyncio.Task | None = None
        self.published: tuple[bool, bool] | None = None
        self.sio = self._client()
        self.events: dict[str, list] = collections.defaultdict(list)
        self.state: dict | None = None
        self.pub: RTCPeerConnection | None = None
        self.relay_only = relay_only
        self.ice_servers: list[dict] = []
        self._configured = asyncio.Event()
        self.sub = None if relay_only else RTCPeerConnection(client_configuration())
        if not relay_only:
            self._configured.set()
        self.tracks: dict[str, dict] = {}
        self.decoded: collections.Counter = collections.Counter()  # (kind, publisher id) -> frames
        self._tasks: list[asyncio.Task] = []
        self.me: dict | None = None
        if self.sub is not None:
            self.sub.on("track", self._on_track)

    def _configuration(self) -> RTCConfiguration:
        if not self.relay_only:
            return client_configuration()
        servers = [RTCIceServer(urls=x["urls"], username=x.get("username"), credential=x.get("credential"))
                   for x in self.ice_servers]
        return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
                                iceTransportPolicy=RTCIceTransportPolicy.RELAY)

    def _client(self) -> socketio.AsyncClient:
        sio = socketio.AsyncClient(reconnection=False)
        for name in self.EVENTS:
            sio.on(name, self._recorder(name))

        async def on_disconnect(*args):
            await self._on_disconnect(sio, *args)

        sio.on("disconnect", on_disconnect)
        return sio

    async def _on_disconnect(self, sio, *args) -> None:
        self.events["disconnect"].append(args)
        if sio is self.sio and self.rejoin and not self.closing and (self._rejoining is None or self._rejoining.done()):
            self._rejoining = asyncio.ensure_future(self._come_back())

    async def _come_back(self) -> None:
        """Reconnect through the deployment until a node takes us back into the room."""
        if self.pub:
            await self.pub.close()
            self.pub = None
        await self.sub.close()
        self.sub = RTCPeerConnection(self._configuration())
        self.sub.on("track", self._on_track)
        self.tracks.clear()
        urls = [self.entry_url, *self.fallback, *self.nodes]
        attempt = 0
        while not self.closing:
            url = urls[attempt % len(urls)]
            attempt += 1
            try:
                old, self.sio = self.sio, self._client()
                if old.connected:
                    await old.disconnect()
                self.base_url = url
                ack = await self.join()
                if ack.get("ok"):
                    if self.published:
                        assert (await self.publish(*self.published))["ok"]
                    self.rejoins += 1
                    self.events["rejoined"].append(self.base_url)
                    return
                self.events["rejoin_refused"].append(ack)
            except Exception as exc:  # noqa: BLE001 - that node is down: the next one
                self.events["rejoin_error"].append(repr(exc))
            await asyncio.sleep(0.5)

    def _recorder(self, name):
        async def record(data=None):
            self.events[name].append(data)
            if name == "room.state":
                self.state = data
            elif name == "room.moved" and self.rejoin and not self.closing:
                await self.sio.disconnect()
            elif name == "rtc.offer":
                self._tasks.append(asyncio.ensure_future(self._answer(data)))
            elif name == "device.admitted":
                self.resume = data["resume"]  # this device holds the place now: join again with it
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
        for _ in range(6):
            ack = await self.call("join", {"token": self.token, **({"resume": self.resume} if self.resume else {})})
            code = None if ack.get("ok") else ack["error"]["code"]
            if code == "redirect":
                # The room lives on another node: go there (as the browser client does).
                self.redirects.append(ack["error"]["node"]["url"])
                old, self.sio = self.sio, self._client()
                await old.disconnect()
                self.base_url = ack["error"]["node"]["url"]
                await self.connect()
            elif meet_steps and code == "consent_required":
                assert (await self.call("consent.online", {"agree": True}))["ok"]
            elif meet_steps and code == "notice_required":
                ids = [n["id"] for n in ack["error"]["notices"]]
                assert (await self.call("notice.ack", {"notices": ids}))["ok"]
            else:
                break
        if ack.get("ok"):
            self.resume = ack.get("resume") or self.resume
            self.me = ack["participant"]
            self.node = ack.get("node")
            self.nodes = [u for u in ack.get("nodes", []) if u]
            self.ice_servers = ack.get("ice_servers") or []
            if self.sub is None:
                self.sub = RTCPeerConnection(self._configuration())
                self.sub.on("track", self._on_track)
                self._configured.set()
        return ack

    async def publish(self, video: bool = True, audio: bool = True) -> dict:
        self.published = (video, audio)
        self.pub = RTCPeerConnection(self._configuration())
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
        await self._configured.wait()
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
        """Leave (as the page does when it goes away) and close everything."""
        if self.sio.connected and self.me is not None and not self.closing:
            try:
                await self.call("leave", timeout=3)
            except Exception:  # noqa: BLE001 - gone already (ended, removed, node down)
                pass
        await self.drop()

    async def drop(self) -> None:
        """Vanish without a word, as a connection that dropped: the server holds the place."""
        self.closing = True
        if self._rejoining is not None:
            self._rejoining.cancel()
        for t in self._tasks:
            t.cancel()
        if self.sio.connected:
            await self.sio.disconnect()
        if self.pub:
            await self.pub.close()
        if self.sub is not None:
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
