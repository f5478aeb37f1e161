"""The caller in the room: a participant of this node over its own socket.io, like a web page, with
aiortc connections. Its publish connection sends the caller's audio (decoded G.711, encoded to Opus
by aiortc); its subscribe connection receives the audio of everyone in its area, decoded and
resampled to 8 kHz into the call's mix. So the lobby, caucus moves, mute, removal and recording
work as for anyone; the SFU never sends a participant its own producer, so there is no echo."""
from __future__ import annotations

import asyncio
import fractions
import logging
import time
from typing import TYPE_CHECKING

import av
import numpy as np
import socketio
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from phone.rtp import FRAME

if TYPE_CHECKING:
    from phone.call import Call

log = logging.getLogger("mediation.phone")
RATE = 8000


class CallerTrack(MediaStreamTrack):
    """The caller's voice, 20 ms at a time from the call's jitter buffer (silence when none)."""
    kind = "audio"

    def __init__(self, call: "Call"):
        super().__init__()
        self.call = call
        self.sent = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self.sent * 0.02 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        samples = self.call.caller_frame()
        if samples is None:
            samples = np.zeros(FRAME, np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self.sent * FRAME
        frame.time_base = fractions.Fraction(1, RATE)
        self.sent += 1
        return frame


def _config() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


class RoomLink:
    def __init__(self, url: str, token: str, call: "Call"):
        self.url = url
        self.token = token
        self.call = call
        self.sio = socketio.AsyncClient(reconnection=False)
        self.pub: RTCPeerConnection | None = None
        self.sub = RTCPeerConnection(_config())
        self.sub.on("track", self._on_track)
        self.me: dict | None = None
        self.admitted = asyncio.Event()
        self._gone = asyncio.get_running_loop().create_future()
        self._tasks: list[asyncio.Task] = []
        self.sio.on("rtc.offer", self._on_offer)
        self.sio.on("room.state", self._on_state)
        self.sio.on("removed", lambda data=None: self._end((data or {}).get("reason") or "removed"))
        self.sio.on("session.ended", lambda data=None: self._end("session_ended"))
        self.sio.on("room.moved", lambda data=None: self._end("room_moved"))
        self.sio.on("disconnect", lambda *a: self._end("disconnected"))

    def _end(self, why: str) -> None:
        if not self._gone.done():
            self._gone.set_result(why)

    async def gone(self) -> str:
        return await self._gone

    async def ask(self, event: str, data: dict, timeout: float = 15) -> dict:
        return await self.sio.call(event, data, timeout=timeout)

    async def join(self) -> dict:
        if not self.sio.connected:
            await self.sio.connect(self.url, socketio_path="socket.io", transports=["websocket"])
        ack = await self.ask("join", {"token": self.token})
        error = ack.get("error") or {}
        if error.get("code") == "redirect":  # the room lives on another node of the deployment
            await self.sio.disconnect()
            self.sio = socketio.AsyncClient(reconnection=False)
            self.url = error["node"]["url"]
            return await self.join()
        if ack.get("ok"):
            self.me = ack["participant"]
            if not ack.get("in_lobby"):
                self.admitted.set()
        return ack

    async def publish(self) -> None:
        """The caller's voice into the room; no video is wanted back (media.audio_only)."""
        await self.ask("media.audio_only", {"on": True})
        self.pub = RTCPeerConnection(_config())
        self.pub.addTransceiver(CallerTrack(self.call), direction="sendonly")
        await self.pub.setLocalDescription(await self.pub.createOffer())
        ack = await self.ask("rtc.offer", {"sdp": self.pub.localDescription.sdp, "type": "offer"})
        if not ack.get("ok"):
            raise RuntimeError(f"publishing the caller's audio was refused: {ack}")
        await self.pub.setRemoteDescription(RTCSessionDescription(sdp=ack["sdp"], type=ack["type"]))

    async def _on_state(self, state=None) -> None:
        me = self.me and next((x for x in (state or {}).get("participants", []) if x.get("id") == self.me["id"]), None)
        if me and me.get("where") not in (None, "lobby"):
            self.admitted.set()

    async def _on_offer(self, offer=None) -> None:
        try:
            await self.sub.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
            await self.sub.setLocalDescription(await self.sub.createAnswer())
            await self.ask("rtc.answer", {"sdp": self.sub.localDescription.sdp, "type": "answer"})
        except Exception:  # noqa: BLE001 - the next offer tries again
            log.exception("answering the room's offer failed")

    def _on_track(self, track) -> None:
        if track.kind == "audio":
            self._tasks.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        try:
            while True:
                frame = await track.recv()
                for out in resampler.resample(frame):
                    self.call.mix.push(track, out.to_ndarray().reshape(-1))
        except (MediaStreamError, asyncio.CancelledError):
            pass
        finally:
            self.call.mix.drop(track)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self.sio.connected and self.me is not None:
            try:
                await self.ask("leave", {}, timeout=3)
            except Exception:  # noqa: BLE001 - gone already
                pass
        if self.sio.connected:
            await self.sio.disconnect()
        if self.pub is not None:
            await self.pub.close()
        await self.sub.close()
