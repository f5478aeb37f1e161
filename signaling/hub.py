"""The signaling hub: socket.io events in, calls on rooms/ and the session service out.

One Hub per process keeps the live rooms of this node. Every event is validated; a bad or
unauthorised one is answered `{"ok": false, "error": {...}}` and changes nothing; no event
can take down the server or another participant's session.

One module (~800 lines): the hub owns this node's live rooms and every event handler that touches them; agreement and procedure events are already modules of their own.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import socketio
from pydantic import BaseModel, ValidationError

from rooms import aiortc_hooks as hooks
from rooms.errors import RoomError
from rooms.participant import GRANTS, LOBBY, MAIN
from rooms.room import Room
from recordings.manifest import load_signed_manifest
from recordings.recorder import SessionRecorder
from server.core import serialize as ser
from server.core.errors import AppError
from server.core.events import AgreementChanged
from server.core.jsonin import TooDeep
from server.core.schemas import InviteIn
from server.core.security import TokenInvalid, decode_join_token
from server.services import directory
from server.services import live as live_svc
from server.services import recordings as rec_svc
from server.services import sessions as session_svc
from signaling.agreement_events import broadcast_agreement, broadcast_comment

from signaling import schemas as ev
from signaling.devices import Devices, matches as device_matches
from signaling.cluster import CapacityError, StartError, make_cluster
from signaling.recording import ConsentError, RecordingController

log = logging.getLogger("mediation.signaling")

RECONNECT_GRACE = 120.0  # seconds a dropped participant may come back on a single-use link
# Events one connection may send: a burst of EVENT_BURST, then EVENT_RATE a second. A page sends
# a few a second at most (its ICE candidates come in a burst of ten or so); past that a flood is
# answered `rate_limited` and not handled, so one page cannot keep the room's loop busy.
EVENT_BURST, EVENT_RATE = 60, 20.0
# A participant calls the mediator (help.request, caucus.knock) once in this many seconds: the
# mediator has been told; more would only bury their screen in the same notice.
CALL_INTERVAL = 10.0
EMPTY_ROOM_GRACE = 600.0  # seconds an empty room is kept before its memory is let go
# A connection that drops without a `leave` keeps its place this long: its tile shows
# "reconnecting", its producers keep their consumers, and a join with the same link within
# it carries on (Room.renew) instead of entering anew (docs/protocol.md, "Coming back").
HOLD_GRACE = 20.0


def fail(code: str, message: str, **extra) -> dict:
    return {"ok": False, "error": {"code": code, "message": message, **extra}}


@dataclass
class LiveRoom:
    room: Room
    session_id: int
    case_id: int
    sids: dict[str, str] = field(default_factory=dict)          # participant id -> socket id
    passes: dict[str, live_svc.Pass] = field(default_factory=dict)
    remembered: dict[str, str] = field(default_factory=dict)    # admitted participant -> area, for rejoins
    # Single-use links may reconnect while their holder is present or just dropped.
    reconnect_until: dict[str, float] = field(default_factory=dict)
    state_pending: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    recording: Any = None  # signaling.recording.RecordingController, when recording is available
    drop_task: asyncio.Task | None = None
    handed_over: bool = False  # another node hosts this room now: stop writing its state
    save_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one state write per room at a time
    holds: dict[str, asyncio.Task] = field(default_factory=dict)  # dropped participant -> its release
    devices: Devices = field(default_factory=Devices)  # which device holds each place; second devices


class Hub:
    def __init__(self, sio: socketio.AsyncServer, db, settings):
        if settings.media_ports is not None:
            try:  # a firewall lets only this range through: refuse to start if it cannot be used
                hooks.check_media_ports(settings.media_ports)
            except OSError as exc:
                raise StartError(f"MEDIA_PORTS {settings.media_ports[0]}-{settings.media_ports[1]}: {exc}") from None
        hooks.set_media_ports(settings.media_ports)
        self.sio = sio
        self._silent: dict[str, frozenset] = {}
        self._watch: asyncio.Task | None = None
        self.db = db
        self.settings = settings
        self.rooms: dict[str, LiveRoom] = {}
        self.by_sid: dict[str, tuple[str, str]] = {}  # socket id -> (room id, participant id)
        self.device_sids: dict[str, str] = {}  # socket id of a waiting second device -> room id
        self._budget: dict[str, list[float]] = {}  # socket id -> [events it may still send, when counted]
        self._calls: dict[tuple[str, str, str], float] = {}  # (room, participant, kind) -> when it called
        self._create_lock = asyncio.Lock()
        self.empty_room_grace = EMPTY_ROOM_GRACE
        self.reconnect_grace = RECONNECT_GRACE
        self.hold_grace = HOLD_GRACE
        # Checks a participant must pass before entering (procedure steps); each returns None
        # or a refusal dict. A refused pass waits in `pending` for the events that satisfy it.
        self.join_gates: list[Callable[[str, live_svc.Pass], Awaitable[dict | None]]] = []
        self.pending: dict[str, live_svc.Pass] = {}
        # Called after a participant entered a room (e.g. to ask for recording consent).
        self.on_joined: list[Callable[[LiveRoom, str], Awaitable[None]]] = []
        # Called after each room.state push, and once more when the room ends (evidence_events.py
        # keeps what each page is shown in step with who is where).
        self.on_state: list[Callable[[LiveRoom], Awaitable[None]]] = []
        # Called when a screen share begins or ends: (live, producer, started, reason, by)
        # (signaling/screen_share.py tells the sharer's page and writes it down).
        self.on_share: list[Callable[..., Awaitable[None]]] = []
        # Told how long each successful join took, in seconds (metrics).
        self.join_observers: list[Callable[[float], None]] = []
        # Where rooms live: this process only, or several nodes sharing Redis (signaling/cluster.py).
        self.cluster = make_cluster(self, settings)
        self.cluster.on("end_room", self._end_room_here)
        self.cluster.on("revoke_invite", self._revoke_invite_here)
        # Every client event: name -> (payload model, needs_join); filled by add_event, read by
        # the input fuzzing in tests/fuzz, so an event added anywhere is covered.
        self.events: dict[str, tuple[type[BaseModel], bool]] = {}
        self._register()

    # ------------------------------------------------------------------ plumbing

    def _register(self) -> None:
        sio = self.sio
        sio.on("connect", self._on_connect)
        sio.on("disconnect", self._on_disconnect)
        table: dict[str, tuple[type[BaseModel], Callable[..., Awaitable[dict]], bool]] = {
            "join": (ev.Join, self.join, False),
            "rtc.offer": (ev.Offer, self.rtc_offer, True),
            "rtc.answer": (ev.Answer, self.rtc_answer, True),
            "rtc.candidate": (ev.Candidate, self.rtc_candidate, True),
            "lobby.admit": (ev.ParticipantRef, self.lobby_admit, True),
            "lobby.deny": (ev.Deny, self.lobby_deny, True),
            "media.mute": (ev.Mute, self.media_mute, True),
            "media.audio_only": (ev.AudioOnly, self.media_audio_only, True),
            "participant.mute": (ev.MuteOther, self.participant_mute, True),
            "participant.remove": (ev.ParticipantRef, self.participant_remove, True),
            "chat.send": (ev.Chat, self.chat_send, True),
            "help.request": (ev.Empty, self.help_request, True),
            "caucus.create": (ev.CaucusCreate, self.caucus_create, True),
            "participant.move": (ev.Move, self.participant_move, True),
            "caucus.close": (ev.CaucusRef, self.caucus_close, True),
            "recording.start": (ev.Empty, self.recording_start, True),
            "recording.stop": (ev.Empty, self.recording_stop, True),
            "recording.consent": (ev.Consent, self.recording_consent, True),
            "recording.caucus": (ev.CaucusRecording, self.recording_caucus, True),
            "invite.expert": (ev.InviteExpert, self.invite_expert, True),
            "invite.revoke": (ev.InviteRevoke, self.invite_revoke, True),
            "experts.list": (ev.ExpertsList, self.experts_list, True),
            "leave": (ev.Empty, self.leave, True),
            "session.end": (ev.Empty, self.session_end, True),
            "device.admit": (ev.ParticipantRef, self.device_admit, True),
            "device.deny": (ev.ParticipantRef, self.device_deny, True),
        }
        for name, (model, fn, needs_join) in table.items():
            self.add_event(name, model, fn, needs_join=needs_join)

    def add_event(self, name: str, model: type[BaseModel], fn, *, needs_join: bool = True) -> None:
        """Register a client event. With needs_join, fn(sid, live, participant_id, payload);
        otherwise fn(sid, payload). Returns a dict merged into the ok ack, or a fail() dict."""
        self.events[name] = (model, needs_join)
        self.sio.on(name, self._wrap(name, model, fn, needs_join))

    def _spend(self, sid: str) -> bool:
        """One event of this connection's budget (EVENT_BURST, EVENT_RATE); False when spent."""
        now = time.monotonic()
        budget = self._budget.get(sid)
        if budget is None:
            budget = self._budget[sid] = [float(EVENT_BURST), now]
        budget[0] = min(float(EVENT_BURST), budget[0] + (now - budget[1]) * EVENT_RATE)
        budget[1] = now
        if budget[0] < 1.0:
            return False
        budget[0] -= 1.0
        return True

    def call_refused(self, live: "LiveRoom", pid: str, kind: str) -> dict | None:
        """None, and the call counted, if `pid` may call the mediator now (CALL_INTERVAL);
        else the refusal to answer with."""
        now, key = time.monotonic(), (live.room.id, pid, kind)
        wait = self._calls.get(key, -CALL_INTERVAL) + CALL_INTERVAL - now
        if wait > 0:
            return fail("rate_limited", f"The mediator has been told; you can ask again in {int(wait) + 1} s.")
        if len(self._calls) > 10000:  # forget old calls; a call older than the interval counts for nothing
            self._calls = {k: t for k, t in self._calls.items() if now - t < CALL_INTERVAL}
        self._calls[key] = now
        return None

    def _wrap(self, name: str, model: type[BaseModel], fn, needs_join: bool):
        async def handler(sid, data=None):
            if not self._spend(sid):
                return fail("rate_limited", "Too many requests from this page at once; wait a moment.")
            if isinstance(data, TooDeep):  # the payload was refused unparsed (signaling/server.py)
                return fail("bad_request", f"The '{name}' payload is nested too deeply (at most {data.limit} levels).")
            if data is None:
                data = {}
            if not isinstance(data, dict):
                return fail("bad_request", f"'{name}' takes an object.")
            try:
                payload = model.model_validate(data)
            except ValidationError as exc:
                fields = {".".join(str(p) for p in e["loc"]) or "_": e["msg"] for e in exc.errors()}
                return fail("bad_request", f"Invalid '{name}' event.", fields=fields)
            try:
                if needs_join:
                    where = self.by_sid.get(sid)
                    live = self.rooms.get(where[0]) if where else None
                    if live is None:
                        return fail("not_joined", "Join the session first.")
                    result = await fn(sid, live, where[1], payload)
                else:
                    result = await fn(sid, payload)
                if isinstance(result, dict) and result.get("ok") is False:
                    return result
                return {"ok": True, **(result or {})}
            except RoomError as exc:
                return fail(exc.code, exc.message)
            except (TokenInvalid, ConsentError) as exc:
                return fail(exc.code, exc.message)
            except AppError as exc:  # with the fields at fault, as the HTTP API answers
                return {"ok": False, **exc.to_json()}
            except Exception:  # noqa: BLE001 - one bad event must not break the connection
                log.exception("event %s from %s failed", name, sid)
                return fail("internal_error", "The server could not handle this request.")
        return handler

    async def _on_connect(self, sid, environ, auth=None):
        return True

    async def _on_disconnect(self, sid, reason=None):
        self.pending.pop(sid, None)
        self._budget.pop(sid, None)
        waiting_in = self.device_sids.pop(sid, None)
        if waiting_in is not None and waiting_in in self.rooms:
            live = self.rooms[waiting_in]
            if live.devices.take(sid) is not None:
                self.schedule_state(live)
        where = self.by_sid.pop(sid, None)
        if where is None:
            return
        live = self.rooms.get(where[0])
        if live is None:
            return
        pid = where[1]
        if live.sids.get(pid) == sid and pid in live.room.participants and self.hold_grace > 0:
            self._hold(live, pid)
            return
        await self._release(live, pid, reason="disconnected", sid=sid)

    def _hold(self, live: LiveRoom, pid: str) -> None:
        """Keep a dropped participant's place for hold_grace (see HOLD_GRACE)."""
        live.sids.pop(pid, None)
        live.room.set_away(pid, True)

        async def release_later():
            await asyncio.sleep(self.hold_grace)
            if live.holds.get(pid) is task:
                del live.holds[pid]
                if pid not in live.sids and not live.room.closed:
                    await self._release(live, pid, reason="disconnected")

        old = live.holds.pop(pid, None)
        if old is not None:
            old.cancel()
        task = asyncio.get_running_loop().create_task(release_later())
        live.holds[pid] = task

    def _unhold(self, live: LiveRoom, pid: str) -> bool:
        task = live.holds.pop(pid, None)
        if task is not None:
            task.cancel()
        return task is not None

    async def emit_to(self, live: LiveRoom, pid: str, event: str, data: Any) -> None:
        # A room's clients are all connected to the node hosting it: no detour through Redis
        # (ignore_queue), which would make every node decode every other node's traffic.
        sid = live.sids.get(pid)
        if sid is not None:
            await self.sio.emit(event, data, to=sid, ignore_queue=True)

    async def speaker_active(self, live: LiveRoom, area: str, speaker: str | None) -> None:
        """The area's active speaker changed (rooms/speaker.py): everyone there highlights that tile."""
        for pid, part in list(live.room.participants.items()):
            if part.area == area:
                await self.emit_to(live, pid, "speaker.active", {"participant_id": speaker, "area": area})

    async def _share_changed(self, live: LiveRoom, producer, started: bool, reason, by) -> None:
        for hook in self.on_share:
            try:
                await hook(live, producer, started, reason, by)
            except Exception:  # noqa: BLE001 - an extension must not break the room
                log.exception("on_share hook failed for room %s", live.room.id)

    def _area_of(self, live: LiveRoom, pid: str) -> str:
        p = live.room.participants.get(pid)
        return p.area if p else LOBBY

    # ------------------------------------------------------------------ room lifecycle

    async def _live_room(self, p: live_svc.Pass, state: dict | None = None) -> LiveRoom:
        """The pass's room here, created (and restored from `state`, the registry's copy) if need be."""
        async with self._create_lock:
            live = self.rooms.get(p.room_id)
            if live is None or live.room.closed:
                holder: dict[str, LiveRoom] = {}
                room = Room(
                    p.room_id,
                    media_addresses=self.settings.media_addresses,
                    ice_servers=self.settings.ice_servers,
                    adaptation=self.settings.adaptation,
                    forwarding=self.settings.forwarding,
                    on_subscribe_offer=lambda pid, offer: self.emit_to(holder["live"], pid, "rtc.offer", offer),
                    on_state_changed=lambda _room: self.schedule_state(holder["live"]),
                    on_participant_removed=lambda pid, reason: None,
                    on_connection_state=lambda pid, target, state: log.debug("%s %s %s", pid, target, state),
                    on_active_speaker=lambda area, pid: self.speaker_active(holder["live"], area, pid),
                    on_share=lambda producer, started, reason, by: self._share_changed(
                        holder["live"], producer, started, reason, by),
                )
                live = holder["live"] = LiveRoom(room=room, session_id=p.session_id, case_id=p.case_id)
                live.recording = RecordingController(self, live, self._recorder_factory(p.session_id))
                self.rooms[p.room_id] = live
                if state:
                    await self._restore(live, state)
            return live

    # ------------------------------------------------------------------ state kept across nodes

    def snapshot(self, live: LiveRoom) -> dict:
        """What another node needs to bring the room back as it was."""
        rec = live.recording
        remembered = dict(live.remembered)
        remembered.update({pid: p.area for pid, p in live.room.participants.items() if p.area != LOBBY})
        return {
            "session_id": live.session_id, "case_id": live.case_id, "node": self.settings.node_id,
            "participants": [{"id": pid, "name": p.name, "role": p.role, "area": p.area}
                             for pid, p in live.room.participants.items()],
            "remembered": remembered,
            "caucuses": dict(live.room.caucuses),
            "caucus_ends": dict(live.room.caucus_ends), "held": sorted(live.room.held),  # room tools
            "devices": dict(live.devices.bound),
            "recording": {"state": rec.state if rec else "off", "consent": dict(rec.consent) if rec else {},
                          "caucuses_enabled": sorted(rec.caucus_enabled) if rec else []},
        }

    async def _save_state(self, live: LiveRoom) -> None:
        if not self.cluster.multi or live.handed_over or live.room.closed:
            return
        try:
            async with live.save_lock:  # in order, each write the room's state as it is now
                await self.cluster.save_state(live.room.id, self.snapshot(live))
        except Exception:  # noqa: BLE001 - the room goes on; the next change saves again
            log.exception("could not save the state of room %s", live.room.id)

    async def _forget_room(self, room_id: str) -> None:
        """The room ended or was let go here: its registry entry goes."""
        try:
            await self.cluster.forget(room_id)
        except Exception:  # noqa: BLE001 - the entry expires by itself
            log.exception("could not forget room %s", room_id)

    async def _load_state(self, room_id: str) -> dict | None:
        if not self.cluster.multi:
            return None
        try:
            return await self.cluster.load_state(room_id)
        except Exception:  # noqa: BLE001 - without it the room starts afresh
            log.exception("could not load the state of room %s", room_id)
            return None

    async def _restore(self, live: LiveRoom, state: dict) -> None:
        """The room's node died or handed it over: take the room back as it was there."""
        for caucus_id, name in (state.get("caucuses") or {}).items():
            if caucus_id not in live.room.caucuses:
                live.room.create_caucus(str(name), caucus_id=str(caucus_id))
        live.remembered.update({str(k): str(v) for k, v in (state.get("remembered") or {}).items()})
        live.room.caucus_ends.update({str(k): float(v) for k, v in (state.get("caucus_ends") or {}).items()
                                      if str(k) in live.room.caucuses})
        live.room.held.update(str(x) for x in state.get("held") or [])
        live.devices.bound.update({str(k): str(v) for k, v in (state.get("devices") or {}).items()})
        until = time.monotonic() + self.reconnect_grace
        for row in state.get("participants") or []:
            live.reconnect_until[str(row["id"])] = until  # single-use links may come back here
        rec, saved = live.recording, state.get("recording") or {}
        if rec is not None and saved.get("state") in ("pending", "on"):
            rec.consent = {str(k): str(v) for k, v in (saved.get("consent") or {}).items()}
            rec.caucus_enabled = set(saved.get("caucuses_enabled") or [])
            if saved["state"] == "on":
                rec.recorder = rec.recorder_factory()
                rec.state = "on"
            else:
                rec.state = "pending"
        await self.record_step(live, None, "room.restored", {
            "from_node": state.get("node"), "node": self.settings.node_id,
            "recording": rec.state if rec is not None else "off",
            "caucuses": sorted((state.get("caucuses") or {}).keys())})
        log.warning("room %s restored on %s (was on %s)", live.room.id, self.settings.node_id, state.get("node"))

    def _recorder_factory(self, session_id: int):
        def make():
            store = rec_svc.store_for(self.settings)
            return SessionRecorder(store, rec_svc.new_run_key(store, session_id),
                                   signing_key=rec_svc.signing_key(self.settings), node_id=self.settings.node_id)
        return make

    def schedule_state(self, live: LiveRoom) -> None:
        """Coalesce the many small changes of one step into one `room.state` push."""
        if live.recording is not None:
            live.recording.sync()  # who is recorded follows who is where, at once
        if live.state_pending:
            return
        live.state_pending = True

        async def push():
            await asyncio.sleep(0)
            live.state_pending = False
            await self.push_state(live)

        asyncio.get_running_loop().create_task(push())

    def state_for(self, live: LiveRoom, pid: str, full: dict | None = None) -> dict:
        """room.state as one participant may see it: what is forwarded to it of each video, and
        the figures behind everyone's link quality only for those who admit (the mediator)."""
        full = full or self.full_state(live)
        if self._area_of(live, pid) != LOBBY:
            me = live.room.participants.get(pid)
            if me is None or not me.can("admit"):
                full = {**full, "participants": [{k: v for k, v in x.items() if k != "link"}
                                                 for x in full["participants"]]}
            else:
                full = {**full, "devices_waiting": live.devices.view()}
            return {**full, **live.room.viewer_view(pid)}
        # Waiting people see themselves and whether the mediator is there, nobody else.
        return {"id": full["id"], "participants": [{k: v for k, v in x.items() if k != "link"}
                                                   for x in full["participants"] if x["id"] == pid],
                "caucuses": [], "recording": full["recording"],
                "mediator_present": any(x["role"] == "mediator" for x in full["participants"])}

    def full_state(self, live: LiveRoom) -> dict:
        state = live.room.state()
        if live.recording is not None:
            state["recording"] = live.recording.view()
        return state

    async def push_state(self, live: LiveRoom) -> None:
        if live.room.closed:
            return
        full = self.full_state(live)
        await self._save_state(live)  # first: what a client has seen survives this node's death
        for pid, sid in list(live.sids.items()):
            await self.sio.emit("room.state", self.state_for(live, pid, full), to=sid, ignore_queue=True)
        await self._state_hooks(live)

    async def _state_hooks(self, live: LiveRoom) -> None:
        for hook in self.on_state:
            try:
                await hook(live)
            except Exception:  # noqa: BLE001 - an extension must not break the room
                log.exception("on_state hook failed for room %s", live.room.id)

    async def _release(self, live: LiveRoom, pid: str, *, reason: str, sid: str | None = None) -> None:
        """Free everything the participant holds and write it down; keep where they were for a rejoin."""
        if sid is not None and live.sids.get(pid) != sid:
            return  # an older connection of someone who already rejoined
        live.sids.pop(pid, None)
        p = live.passes.pop(pid, None)
        if reason in ("disconnected", "left"):
            # A reload or a closed tab may come back shortly, even on a single-use link.
            live.reconnect_until[pid] = time.monotonic() + self.reconnect_grace
        if pid in live.room.participants:
            area = live.room.participants[pid].area
            if area != LOBBY:
                live.remembered[pid] = area
            try:
                await live.room.remove(pid, reason=reason)
            except RoomError:
                pass
        if p is not None:
            try:
                async with self.db.session() as s:
                    await live_svc.record(s, p, "participant.left", {"reason": reason})
            except Exception:  # noqa: BLE001 - the room must go on even if the log write failed
                log.exception("could not record that %s left", pid)
        if reason in ("disconnected", "left"):
            await self._let_waiting_device_in(live, pid)
        if not live.sids and not live.room.participants:
            self._drop_when_still_empty(live)

    def _drop_when_still_empty(self, live: LiveRoom) -> None:
        """An empty room keeps its caucuses and who was where for a while, so people coming
        back (the mediator alone reloading, say) find it as they left it."""
        async def later():
            await asyncio.sleep(self.empty_room_grace)
            if not live.sids and not live.room.participants:
                await self._drop_room(live)

        if live.drop_task is None or live.drop_task.done():
            live.drop_task = asyncio.get_running_loop().create_task(later())

    async def _drop_room(self, live: LiveRoom) -> None:
        if live.recording is not None and live.recording.state in ("on", "pending"):
            return  # a running recording keeps the room until it is stopped or the session ends
        if self.rooms.get(live.room.id) is live:
            del self.rooms[live.room.id]
            await self._forget_room(live.room.id)
        await live.room.close()

    async def end_room(self, room_id: str, reason: str = "session_ended") -> None:
        """The session ended (from the room or the REST API): on whichever node hosts the room,
        tell everyone and free it."""
        await self.cluster.command("end_room", room_id=room_id, reason=reason)

    async def _end_room_here(self, room_id: str, reason: str = "session_ended") -> None:
        live = self.rooms.pop(room_id, None)
        if live is None:
            return
        await self._forget_room(room_id)
        if live.drop_task is not None:
            live.drop_task.cancel()
        if live.recording is not None and live.recording.state in ("on", "pending"):
            try:
                await self._finish_recording(live, None)
            except Exception:  # noqa: BLE001 - the files stay on disk and are recovered on restart
                log.exception("could not finish the recording of room %s", room_id)
        for pid in list(live.holds):
            self._unhold(live, pid)
        for pid, sid in list(live.sids.items()):
            await self.sio.emit("session.ended", {"reason": reason}, to=sid, ignore_queue=True)
            self.by_sid.pop(sid, None)
        live.sids.clear()
        await live.room.close()
        await self._state_hooks(live)

    async def lose_room(self, room_id: str) -> None:
        """Another node hosts this room now (this one is shutting down, or was taken for dead):
        finish this node's part of the recording, tell the clients to come back through the
        deployment, and let the room go without ending the session."""
        live = self.rooms.pop(room_id, None)
        if live is None:
            return
        live.handed_over = True
        if live.drop_task is not None:
            live.drop_task.cancel()
        if live.recording is not None and live.recording.state == "on":
            try:
                await self._finish_recording(live, None)
            except Exception:  # noqa: BLE001 - the files stay on disk: `mediation recordings recover`
                log.exception("could not finish the recording of room %s", room_id)
        for pid in list(live.holds):
            self._unhold(live, pid)
        for pid, sid in list(live.sids.items()):
            await self.sio.emit("room.moved", {"reason": "node_change"}, to=sid, ignore_queue=True)
            self.by_sid.pop(sid, None)
        live.sids.clear()
        await live.room.close()

    def start_watching(self) -> None:
        self._watch = asyncio.get_running_loop().create_task(self.watch_connections())

    async def watch_connections(self, interval: float = 1.0) -> None:
        """Everyone sees who is reconnecting: when the set of participants whose media went
        silent (rooms.Room.silent) changes, the room's state is pushed again."""
        while True:
            await asyncio.sleep(interval)
            for room_id, live in list(self.rooms.items()):
                if live.room.closed:
                    continue
                silent = frozenset(pid for pid in list(live.room.participants)
                                   if live.room.connection(pid) == "reconnecting")
                if silent != self._silent.get(room_id, frozenset()):
                    self._silent[room_id] = silent
                    try:
                        await self.push_state(live)
                    except Exception:  # noqa: BLE001 - the next round tries again
                        log.exception("pushing the connection state of room %s failed", room_id)
            for room_id in [r for r in self._silent if r not in self.rooms]:
                del self._silent[room_id]

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        if self.cluster.multi:
            # Hand the rooms over: the session goes on on another node.
            self.cluster.draining = True
            try:
                await self.cluster.beat()
            except Exception:  # noqa: BLE001
                pass
            for room_id in list(self.rooms):
                live = self.rooms[room_id]
                try:
                    await self.cluster.save_state(room_id, self.snapshot(live))
                    await self.cluster.release(room_id)
                except Exception:  # noqa: BLE001 - its entry still names this node, which is stopping
                    log.exception("could not hand over room %s", room_id)
                await self.lose_room(room_id)
            await self.cluster.stop()
            return
        for room_id in list(self.rooms):
            await self._end_room_here(room_id, reason="server_shutdown")

    # ------------------------------------------------------------------ events

    async def join(self, sid: str, data: ev.Join) -> dict:
        started = time.monotonic()
        claims = decode_join_token(self.settings.secret_key, data.token)
        if sid in self.by_sid:
            # The same join again on this connection (a double tap, a retried step): the same
            # answer, nothing changed. Another link on a joined connection is refused.
            room_id, pid = self.by_sid[sid]
            live = self.rooms.get(room_id)
            part = live.room.participants.get(pid) if live else None
            if part is not None and str(claims.get("sub")) == pid and str(claims.get("room", "")) == room_id:
                return self._join_ack(live, pid, live.passes[pid], part,
                                      resume=data.resume if live.devices.holds(pid, data.resume) else None)
            return fail("already_joined", "This connection has already joined.")
        room_id = str(claims.get("room", ""))
        existing = self.rooms.get(room_id)
        sub = str(claims.get("sub"))
        # Coming back is for the device that holds the place (signaling/devices.py): a used
        # single-use link without its secret is refused in check_pass.
        known = existing is not None and existing.devices.holds(sub, data.resume) and (
            sub in existing.room.participants or existing.reconnect_until.get(sub, 0) > time.monotonic())
        state = None
        if existing is None or existing.room.closed:
            # A whole room lives on one node: find it, or place it on the least-loaded one.
            try:
                host = await self.cluster.place(room_id)
            except CapacityError:
                return fail("capacity", "Every server is full right now. Please try again in a minute.")
            except Exception:  # noqa: BLE001 - Redis unreachable
                log.exception("could not place room %s", room_id)
                return fail("unavailable", "The service is briefly unavailable. Please try again.")
            if host is not None and not host.url:
                return fail("unavailable", "The service is briefly unavailable. Please try again.")
            if host is not None:
                return fail("redirect", "This session is hosted on another server.",
                            node={"id": host.id, "url": host.url})
            state = await self._load_state(room_id)
            known = known or bool(state and sub in {str(r.get("id")) for r in state.get("participants") or []}
                                  and device_matches(state.get("devices") or {}, sub, data.resume))
        async with self.db.session() as s:
            p = await live_svc.check_pass(s, self.settings.secret_key, data.token, known=known)
        for gate in self.join_gates:
            refusal = await gate(sid, p)
            if refusal is not None:
                self.pending[sid] = p
                return refusal
        self.pending.pop(sid, None)
        # (A room let go meanwhile was also forgotten by the registry: nothing to restore then.)
        live = await self._live_room(p, state)
        if live.room.closed:  # an empty room was just let go: start a fresh one
            live = await self._live_room(p)
        async with live.lock:
            if live.room.closed:
                return fail("session_ended", "This mediation session has ended.")
            pid = p.participant_id
            resumed = pid in live.room.participants
            this_device = live.devices.holds(pid, data.resume)
            if resumed and not this_device:
                return await self._second_device(sid, live, p)
            resume = data.resume if this_device else live.devices.bind(pid)
            if resumed:
                # The same person again: a connection that dropped (held), a reload, or a second
                # tab. The newest connection wins and carries on where the person is, with fresh
                # media connections whose producers keep their consumers (Room.renew).
                old_sid = live.sids.get(pid)
                if old_sid and old_sid != sid:
                    await self.sio.emit("removed", {"reason": "replaced"}, to=old_sid, ignore_queue=True)
                    self.by_sid.pop(old_sid, None)
                self._unhold(live, pid)
                await live.room.renew(pid)
                participant = live.room.participants[pid]
            else:
                participant = live.room.join(pid, p.name, p.role, grants=p.grants & GRANTS, direct=p.direct,
                                             remembered=live.remembered.get(pid),
                                             accompanies=(p.accompanies, p.accompanies_name) if p.accompanies else None)
            area = participant.area
            live.sids[pid] = sid
            live.passes[pid] = p
            live.reconnect_until.pop(pid, None)
            self.by_sid[sid] = (live.room.id, pid)
        async with self.db.session() as s:
            await live_svc.joined(s, p, area, resumed=resumed)
        if area == LOBBY and not resumed:
            await self.to_grant_holders(live, "admit", "lobby.waiting", waiting(p))
        if live.recording is not None:
            await live.recording.ask_newcomer(pid)
        for hook in self.on_joined:
            try:
                await hook(live, pid)
            except Exception:  # noqa: BLE001 - an extension must not break joining
                log.exception("on_joined hook failed for %s", pid)
        for observe in self.join_observers:
            observe(time.monotonic() - started)
        return self._join_ack(live, pid, p, participant, resumed=resumed, resume=resume)

    def _join_ack(self, live: LiveRoom, pid: str, p, participant, resumed: bool = False,
                  resume: str | None = None) -> dict:
        return {"participant": {"id": pid, "role": p.role, "name": p.name, "grants": sorted(participant.grants)},
                "resumed": resumed, "resume": resume,
                "room": self.state_for(live, pid), "in_lobby": participant.area == LOBBY,
                "ice_servers": live_svc.ice_servers_for(self.settings, p),
                "session_id": p.session_id, "node": {"id": self.settings.node_id, "url": self.settings.node_url},
                "nodes": self.cluster.node_urls()}

    async def to_grant_holders(self, live: LiveRoom, grant: str, event: str, data: dict) -> None:
        for pid, part in list(live.room.participants.items()):
            if part.can(grant):
                await self.emit_to(live, pid, event, data)

    async def rtc_offer(self, sid, live: LiveRoom, pid: str, data: ev.Offer) -> dict:
        if not live.room.participants[pid].can("publish"):
            return fail("forbidden", "Your role does not publish media.")
        answer = await live.room.handle_publish_offer(pid, data.sdp, data.type, data.tracks)
        return {"sdp": answer["sdp"], "type": answer["type"]}

    async def rtc_answer(self, sid, live: LiveRoom, pid: str, data: ev.Answer) -> dict:
        await live.room.handle_subscribe_answer(pid, data.sdp, data.type)
        return {}

    async def rtc_candidate(self, sid, live: LiveRoom, pid: str, data: ev.Candidate) -> dict:
        await live.room.add_ice_candidate(pid, data.target, data.candidate or None, data.sdpMid, data.sdpMLineIndex)
        return {}

    async def _staff_step(self, live: LiveRoom, pid: str, target: str, action: str, data: dict | None = None) -> None:
        actor, subject = live.passes.get(pid), live.passes.get(target)
        if actor is None:
            return
        async with self.db.session() as s:
            if subject is not None:
                await live_svc.record(s, subject, action, data, actor=actor.ref())
            else:
                await live_svc.record(s, actor, action, {"target": target, **(data or {})})

    async def record_step(self, live: LiveRoom, pid: str | None, action: str, data: dict | None = None,
                          *, self_action: bool = False) -> None:
        """Write a room step to the case's audit chain: by a participant, or by the system (pid None)."""
        async with self.db.session() as s:
            p = live.passes.get(pid) if pid else None
            if p is not None:
                await live_svc.record(s, p, action, data)
            else:
                await live_svc.record_system(s, live.case_id, live.session_id, action, data)

    async def lobby_admit(self, sid, live: LiveRoom, pid: str, data: ev.ParticipantRef) -> dict:
        admitted = live.room.admit(data.participant_id, by=pid)
        for target in admitted:
            live.remembered[target] = live.room.participants[target].area
            await self._staff_step(live, pid, target, "participant.admitted",
                                   {"with": data.participant_id} if target != data.participant_id else None)
        return {"admitted": admitted}

    async def _sent_back(self, live: LiveRoom, pid: str | None, party: str, targets: list[str]) -> None:
        """Those who accompany a party sent away wait in the lobby again (Room.remove): the
        mediator is told as for anyone sent back, and the record says why."""
        for target in targets:
            live.remembered.pop(target, None)
            p = live.passes.get(target)
            if p is None:
                continue
            await self.to_grant_holders(live, "admit", "lobby.waiting", waiting(p, sent_back=True))
            async with self.db.session() as s:
                await live_svc.record_by(s, p, "participant.moved", {"to": LOBBY, "to_name": LOBBY, "with": party},
                                         by=live.passes.get(pid) if pid else None)

    async def lobby_deny(self, sid, live: LiveRoom, pid: str, data: ev.Deny) -> dict:
        target = data.participant_id
        if live.room.participants.get(target) is None:
            return fail("not_found", "No such participant.")
        live.room.participant(pid).require("admit")
        await self._staff_step(live, pid, target, "participant.denied", {"reason": data.reason or ""})
        await self.emit_to(live, target, "removed", {"reason": "denied", "message": data.reason or ""})
        target_sid = live.sids.get(target)
        sent_back = await live.room.deny(target, reason="denied", by=pid)
        self._forget(live, target, target_sid)
        await self._sent_back(live, pid, target, sent_back)
        return {}

    # ------------------------------------------------------------------ second devices

    async def _second_device(self, sid: str, live: LiveRoom, p) -> dict:
        """The link is in use on another device: this one waits for someone who admits (or
        for the holder to go); it never replaces whoever is in (signaling/devices.py)."""
        again = sid in live.devices.waiting  # the page asked again while waiting
        live.devices.wait(sid, p)
        self.device_sids[sid] = live.room.id
        if not again:
            async with self.db.session() as s:
                await live_svc.record(s, p, "participant.second_device")
        self.schedule_state(live)
        return fail("second_device", "This link is already in use on another device. "
                    "The mediator has been asked to let this device in.")

    async def _let_device_in(self, live: LiveRoom, sid: str, pid: str) -> None:
        live.devices.take(sid)
        self.device_sids.pop(sid, None)
        # The secret is this device's now: its join carries on the place (the holder, if still
        # connected, is replaced by that join).
        await self.sio.emit("device.admitted", {"resume": live.devices.bind(pid)}, to=sid, ignore_queue=True)
        self.schedule_state(live)

    async def _let_waiting_device_in(self, live: LiveRoom, pid: str) -> None:
        """The holder is gone (left, or its hold ran out): the longest-waiting device takes over."""
        device = live.devices.first_waiting(pid)
        if device is not None and not live.room.closed:
            await self._let_device_in(live, device.sid, pid)

    async def device_admit(self, sid, live: LiveRoom, pid: str, data: ev.ParticipantRef) -> dict:
        live.room.participant(pid).require("admit")
        device = live.devices.first_waiting(data.participant_id)
        if device is None:
            return fail("not_found", "No second device is waiting for this participant.")
        await self._let_device_in(live, device.sid, data.participant_id)
        async with self.db.session() as s:
            await live_svc.record(s, device.pass_, "participant.device_admitted", actor=live.passes[pid].ref())
        return {}

    async def device_deny(self, sid, live: LiveRoom, pid: str, data: ev.ParticipantRef) -> dict:
        live.room.participant(pid).require("admit")
        device = live.devices.first_waiting(data.participant_id)
        if device is None:
            return fail("not_found", "No second device is waiting for this participant.")
        live.devices.take(device.sid)
        self.device_sids.pop(device.sid, None)
        await self.sio.emit("device.denied", {}, to=device.sid, ignore_queue=True)
        async with self.db.session() as s:
            await live_svc.record(s, device.pass_, "participant.device_denied", actor=live.passes[pid].ref())
        self.schedule_state(live)
        return {}

    def _forget(self, live: LiveRoom, pid: str, sid: str | None) -> None:
        live.sids.pop(pid, None)
        live.passes.pop(pid, None)
        live.remembered.pop(pid, None)
        if sid:
            self.by_sid.pop(sid, None)

    async def media_mute(self, sid, live: LiveRoom, pid: str, data: ev.Mute) -> dict:
        live.room.mute(pid, data.kind, data.muted, reason=data.reason)
        return {}

    async def media_audio_only(self, sid, live: LiveRoom, pid: str, data: ev.AudioOnly) -> dict:
        live.room.set_audio_only(pid, data.on)
        return {}

    async def participant_mute(self, sid, live: LiveRoom, pid: str, data: ev.MuteOther) -> dict:
        live.room.mute(data.participant_id, data.kind, True, by=pid)
        await self.emit_to(live, data.participant_id, "muted", {"kind": data.kind, "by": pid})
        await self._staff_step(live, pid, data.participant_id, "participant.muted", {"kind": data.kind})
        return {}

    async def participant_remove(self, sid, live: LiveRoom, pid: str, data: ev.ParticipantRef) -> dict:
        target = data.participant_id
        if target == pid:
            return fail("bad_request", "Use 'leave' to leave.")
        if live.room.participants.get(target) is None:
            return fail("not_found", "No such participant.")
        live.room.participant(pid).require("move")
        await self._staff_step(live, pid, target, "participant.removed")
        await self.emit_to(live, target, "removed", {"reason": "removed"})
        target_sid = live.sids.get(target)
        sent_back = await live.room.remove(target, reason="removed", by=pid)
        self._forget(live, target, target_sid)
        await self._sent_back(live, pid, target, sent_back)
        return {}

    async def chat_send(self, sid, live: LiveRoom, pid: str, data: ev.Chat) -> dict:
        area = self._area_of(live, pid)
        if area == LOBBY:
            return fail("in_lobby", "You can chat once the mediator has let you in.")
        p = live.passes[pid]
        async with self.db.session() as s:
            msg = await live_svc.save_chat(s, p, area, data.text)
        out = {"id": msg.id, "participant_id": pid, "name": p.name, "role": p.role, "text": msg.text,
               "area": area, "at": msg.created_at.isoformat()}
        for other, other_sid in list(live.sids.items()):
            if self._area_of(live, other) == area:
                await self.sio.emit("chat.message", out, to=other_sid, ignore_queue=True)
        return {"message": out}

    async def help_request(self, sid, live: LiveRoom, pid: str, data: ev.Empty) -> dict:
        if self._area_of(live, pid) == LOBBY:  # only admitted participants ask (docs/protocol.md)
            return fail("in_lobby", "You can ask for help once the mediator has let you in.")
        refused = self.call_refused(live, pid, "help")
        if refused:
            return refused
        p = live.passes[pid]
        await self.to_grant_holders(live, "admit", "help.requested",
                                     {"participant_id": pid, "name": p.name, "where": self._area_of(live, pid)})
        async with self.db.session() as s:
            await live_svc.record(s, p, "participant.help_requested")
        return {}

    async def caucus_create(self, sid, live: LiveRoom, pid: str, data: ev.CaucusCreate) -> dict:
        caucus_id = live.room.create_caucus(data.name, by=pid)
        if data.minutes:
            live.room.set_caucus_timer(caucus_id, data.minutes, by=pid)
        async with self.db.session() as s:
            await live_svc.record(s, live.passes[pid], "caucus.created",
                                  {"caucus_id": caucus_id, "caucus": data.name, "minutes": data.minutes})
        return {"caucus_id": caucus_id}

    async def recording_start(self, sid, live: LiveRoom, pid: str, data: ev.Empty) -> dict:
        live.room.participant(pid).require("record")
        await live.recording.request(pid)
        return {"recording": live.recording.view()}

    async def recording_consent(self, sid, live: LiveRoom, pid: str, data: ev.Consent) -> dict:
        await live.recording.answer(pid, data.agree)
        return {"recording": live.recording.view()}

    async def recording_caucus(self, sid, live: LiveRoom, pid: str, data: ev.CaucusRecording) -> dict:
        live.room.participant(pid).require("record")
        if data.caucus_id not in live.room.caucuses:
            return fail("not_found", "No such caucus.")
        await live.recording.set_caucus(data.caucus_id, data.enabled)
        await self.record_step(live, pid, "recording.caucus", {"caucus_id": data.caucus_id, "enabled": data.enabled})
        return {}

    async def recording_stop(self, sid, live: LiveRoom, pid: str, data: ev.Empty) -> dict:
        live.room.participant(pid).require("record")
        run = await self._finish_recording(live, pid)
        return {"run": run}

    async def _finish_recording(self, live: LiveRoom, pid: str | None) -> str | None:
        """Stop writing, then attach the signed manifest and its files to the session."""
        manifest = await live.recording.stop()
        if manifest is None:
            await self.record_step(live, pid, "recording.cancelled", {})
            return None
        store = rec_svc.store_for(self.settings)
        document = await asyncio.to_thread(load_signed_manifest, store, manifest.session_key)
        p = live.passes.get(pid) if pid else None
        async with self.db.session() as s:
            await rec_svc.attach(s, live.session_id, document, actor=p.ref() if p else None)
        return manifest.session_key

    async def caucus_close(self, sid, live: LiveRoom, pid: str, data: ev.CaucusRef) -> dict:
        """Everyone in the caucus returns to the main room."""
        members = [x for x, part in live.room.participants.items() if part.area == data.caucus_id]
        name = live.room.caucuses.get(data.caucus_id)
        live.room.close_caucus(data.caucus_id, by=pid)
        for member in members:
            live.remembered[member] = MAIN
        for other, area in list(live.remembered.items()):
            if area == data.caucus_id:
                live.remembered[other] = MAIN
        await self.record_step(live, pid, "caucus.closed", {"caucus_id": data.caucus_id, "caucus": name})
        return {}

    async def participant_move(self, sid, live: LiveRoom, pid: str, data: ev.Move) -> dict:
        target = data.participant_id
        if data.to != MAIN and data.to != LOBBY and data.to not in live.room.caucuses:
            return fail("not_found", "No such caucus.")
        if live.room.participants.get(target) is None:
            return fail("not_found", "No such participant.")
        if live.room.participants[target].area == LOBBY:
            return fail("bad_state", "Admit the participant from the lobby first.")
        if data.to == LOBBY:  # send back to the lobby: their media stops, they may be admitted again
            live.room.participant(pid).require("admit")
            if target == pid or live.room.participants[target].role == "mediator":
                return fail("bad_request", "The mediator cannot be sent to the lobby.")
        moved = live.room.move(target, data.to, by=pid)
        # A party's interpreters and support persons moved with it (Room.move): each is written down.
        for who in moved:
            if data.to == LOBBY:
                live.remembered.pop(who, None)
                await self.to_grant_holders(live, "admit", "lobby.waiting", waiting(live.passes[who], sent_back=True))
            else:
                live.remembered[who] = data.to
            await self._staff_step(live, pid, who, "participant.moved",
                                   {"to": data.to, "to_name": live.room.caucuses.get(data.to, "main"),
                                    **({"with": target} if who != target else {})})
        return {"moved": moved}

    async def invite_expert(self, sid, live: LiveRoom, pid: str, data: ev.InviteExpert) -> dict:
        live.room.participant(pid).require("invite")
        if data.expert_id is None and not data.name:
            return fail("bad_request", "Pick an expert from the pool or give a name.")
        body = InviteIn(role="expert", expert_id=data.expert_id, name=data.name if data.expert_id is None else None,
                        specialty=data.specialty if data.expert_id is None else None,
                        organisation=data.organisation if data.expert_id is None else None,
                        direct=data.direct, expires_in=data.expires_in)
        async with self.db.session() as s:
            actor = await live_svc.mediator_actor(s, live.passes[pid])
            invite, token = await session_svc.create_invite(s, actor, live.session_id, body,
                                                            secret=self.settings.secret_key,
                                                            default_seconds=self.settings.join_token_default_seconds)
        url = f"{self.settings.public_url}/join/{token}"
        return {"url": url, "token": token, "invite_id": invite.id, "name": invite.name,
                "specialty": invite.specialty, "expires_at": invite.expires_at.isoformat(), "qr": qr_data_url(url)}

    async def invite_revoke(self, sid, live: LiveRoom, pid: str, data: ev.InviteRevoke) -> dict:
        live.room.participant(pid).require("invite")
        async with self.db.session() as s:
            actor = await live_svc.mediator_actor(s, live.passes[pid])
            # The holder leaves the room when this commits (InviteRevoked, server/system.py).
            await session_svc.revoke_invite(s, actor, live.session_id, data.invite_id)
        return {}

    async def agreement_changed(self, e: AgreementChanged) -> None:
        """The case's agreement changed (server/core/events.py): its live room(s) see it."""
        if e.what == "comment":
            in_room = e.author_type == "participant"
            await broadcast_comment(self, e.case_id, e.comment or {}, to_all=in_room,
                                    author_pid=e.author_id if in_room else None, area=e.area)
        else:
            await broadcast_agreement(self, e.case_id)

    async def revoke_invite(self, room_id: str, invite_id: int) -> None:
        """A withdrawn link ends its holder's presence at once, on whichever node."""
        await self.cluster.command("revoke_invite", room_id=room_id, invite_id=invite_id)

    async def _revoke_invite_here(self, room_id: str, invite_id: int) -> None:
        live = self.rooms.get(room_id)
        if live is None:
            return
        for target, p in list(live.passes.items()):
            if p.invite_id == invite_id:
                await self.emit_to(live, target, "removed", {"reason": "revoked"})
                target_sid = live.sids.get(target)
                sent_back: list[str] = []
                try:
                    sent_back = await live.room.remove(target, reason="revoked")
                except RoomError:
                    pass
                self._forget(live, target, target_sid)
                await self._sent_back(live, None, target, sent_back)

    async def experts_list(self, sid, live: LiveRoom, pid: str, data: ev.ExpertsList) -> dict:
        live.room.participant(pid).require("invite")
        async with self.db.read() as s:
            actor = await live_svc.mediator_actor(s, live.passes[pid])
            experts = await directory.list_experts(s, actor, data.specialty or None, data.level)
        return {"experts": [ser.expert(e) for e in experts]}

    async def leave(self, sid, live: LiveRoom, pid: str, data: ev.Empty) -> dict:
        self.by_sid.pop(sid, None)
        await self._release(live, pid, reason="left", sid=sid)
        return {}

    async def session_end(self, sid, live: LiveRoom, pid: str, data: ev.Empty) -> dict:
        p = live.passes[pid]
        async with self.db.session() as s:
            # Everyone is told and the room freed when this commits (SessionEnded, server/system.py).
            await live_svc.end_by_participant(s, p)
        return {}


def waiting(p: live_svc.Pass, **extra) -> dict:
    """`lobby.waiting`: who waits; an interpreter or support person with the party they accompany."""
    out = {"participant_id": p.participant_id, "name": p.name, "role": p.role, **extra}
    if p.accompanies:
        out.update(accompanies=p.accompanies, accompanies_name=p.accompanies_name)
    return out


def qr_data_url(text: str) -> str:
    """The link as a QR code (SVG data URL), for an expert to scan from the mediator's screen."""
    import base64
    import io

    import qrcode
    import qrcode.image.svg

    out = io.BytesIO()
    qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage).save(out)
    return "data:image/svg+xml;base64," + base64.b64encode(out.getvalue()).decode()
