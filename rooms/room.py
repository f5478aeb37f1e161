"""Room: one mediation session's live space (lobby, main area, caucus sub-rooms).

The signaling layer drives a Room with plain method calls and receives its events
through callbacks given to the constructor; callbacks may be plain functions or
coroutine functions. Every participant-level failure is contained: a bad SDP raises
RoomError for that caller and changes nothing for anyone else.
"""

from __future__ import annotations

import asyncio
import time
import collections
import logging
from typing import Any, Callable, Optional

from . import aiortc_hooks as hooks
from .adaptation import TICK, Adaptation
from .announce import announce, parse_addresses
from .errors import RoomError
from .media import FRAMES, PACKETS, Consumer, ConsumerSink, Producer
from .participant import KINDS, LOBBY, MAIN, Participant, iso_time, make_participant
from .peers import PublishSession, SubscribeSession, make_configuration, maybe_await, new_id
from .router import Router
from .speaker import SAMPLE as SPEAKER_SAMPLE, SpeakerDetector

logger = logging.getLogger(__name__)

Callback = Optional[Callable[..., Any]]


# Media silence after which the others see a participant as reconnecting (viewers' receiver
# reports come about every second, publishers' packets many times a second).
RECONNECTING_AFTER = 3.0
# A renewed connection's producers wait this long for the new connection to carry them on;
# then they are closed, as if the participant had stopped sending.
RENEW_GRACE = 20.0


class Room:
    """
    Callbacks (all optional):
      on_subscribe_offer(participant_id, {"sdp", "type", "tracks"}) -> awaitable|None
          forward as the `rtc.offer` server event; the client answers through
          `handle_subscribe_answer`. `tracks` lists each m-line: mid, kind, active,
          producer_id, participant_id.
      on_state_changed(room)                       broadcast `room.state` (room.state())
      on_participant_removed(participant_id, reason)   send `removed` / clean up
      on_connection_state(participant_id, target, state)  "publish"/"subscribe", aiortc state
      on_producer_added(producer) / on_producer_removed(producer)   e.g. for recorders
      on_active_speaker(area, participant_id | None)   push `speaker.active` to the area
      on_share(producer, started, reason, by)   a screen share began (reason None) or ended:
          reason "stopped" (the sharer's page), "stopped_by" (`by` stopped it), "moved" (the
          sharer changed area), "left", "connection" (its renewed connection did not carry it on)

    media_addresses: IP addresses announced to clients besides the host candidates
    aiortc gathers (the node's public addresses behind a 1:1 NAT; see announce.py).
    """

    def __init__(
        self,
        room_id: str,
        *,
        ice_servers: Optional[list[Any]] = None,
        on_subscribe_offer: Callback = None,
        on_state_changed: Callback = None,
        on_participant_removed: Callback = None,
        on_connection_state: Callback = None,
        on_producer_added: Callback = None,
        on_producer_removed: Callback = None,
        on_active_speaker: Callback = None,
        on_share: Callback = None,
        media_addresses: Optional[list[str]] = None,
        adaptation: bool = True,
        forwarding: str = PACKETS,
    ) -> None:
        hooks.check_hooks()  # refuse to run forwarding on an aiortc we do not know
        self.id = room_id
        self.participants: dict[str, Participant] = {}
        self.caucuses: dict[str, str] = {}  # caucus id -> name
        self.router = Router(self.participants)
        self.recording = False
        self.closed = False
        self._ice_servers = ice_servers
        self._configuration = make_configuration(ice_servers)  # validates early
        if forwarding not in (PACKETS, FRAMES):
            raise ValueError(f"forwarding must be {PACKETS!r} or {FRAMES!r}, not {forwarding!r}")
        # How viewers are fed (rooms/media.py): per RTP packet, or per frame (FORWARDING=frames).
        self.forwarding = forwarding
        self.media_addresses = parse_addresses(media_addresses)  # validates early
        self.on_subscribe_offer = on_subscribe_offer
        self.on_state_changed = on_state_changed
        self.on_participant_removed = on_participant_removed
        self.on_connection_state = on_connection_state
        self.on_producer_added = on_producer_added
        self.on_producer_removed = on_producer_removed
        self.on_active_speaker = on_active_speaker
        self.on_share = on_share
        # Room tools (docs/protocol.md, "Room tools"): caucus timers (caucus id -> end, time.time()),
        # who the mediator holds muted (kept when they drop and come back), raise order.
        self.caucus_ends: dict[str, float] = {}
        self.held: set[str] = set()
        self._hands = 0
        self.speakers = SpeakerDetector()
        self._speaker_task: Optional[asyncio.Task] = None
        self._extra_consumers: dict[str, Consumer] = {}  # recorder and other sinks
        self._delivered: collections.Counter[tuple[str, str]] = collections.Counter()
        self._tasks: set[asyncio.Task] = set()
        # participant id -> producers of a renewed publish connection not yet carried on.
        self._parked: dict[str, list[Producer]] = {}
        self._park_timers: dict[str, asyncio.TimerHandle] = {}
        self.renew_grace = RENEW_GRACE
        # Per-viewer adaptation and link quality (rooms/adaptation.py); off: measure only.
        self.adaptation = Adaptation(enabled=adaptation)
        self._quality: dict[str, Optional[str]] = {}
        self._adapt_task: Optional[asyncio.Task] = None
        self._ticks = 0

    # ------------------------------------------------------------------ people

    def entry_area(self, role: str, *, direct: bool = False, remembered: Optional[str] = None) -> str:
        """The one rule of where someone enters: back where they were (a reconnect, or a room
        restored on another node) while that area still exists; else the mediator and whoever was
        invited for direct entry (an expert; everyone in a court's review) go to the main area,
        everybody else waits in the lobby."""
        if remembered is not None and (remembered in (MAIN, LOBBY) or remembered in self.caucuses):
            return remembered
        if remembered is not None:
            return MAIN  # their caucus was closed meanwhile
        return MAIN if role == "mediator" or direct else LOBBY

    def join(
        self,
        participant_id: str,
        name: str,
        role: str,
        *,
        grants: Optional[set[str]] = None,
        area: Optional[str] = None,
        direct: bool = False,
        remembered: Optional[str] = None,
        accompanies: Optional[tuple[str, str]] = None,
    ) -> Participant:
        """Add a participant where `entry_area` says, unless `area` is given. `accompanies`: the
        (participant id, name) of the party an interpreter or support person comes with; coming
        back out of the lobby, they come back to where that party is now (the main area while it
        is not in the room or waits in the lobby)."""
        self._require_open()
        if participant_id in self.participants:
            raise RoomError("conflict", f"participant {participant_id} is already in the room")
        if area is None:
            area = self.entry_area(role, direct=direct, remembered=remembered)
            if accompanies and area != LOBBY:  # never in an area their party is not in (Room.move)
                party = self.participants.get(accompanies[0])
                area = party.area if party is not None and party.area != LOBBY else MAIN
        self._require_area(area)
        participant = make_participant(participant_id, name, role, grants, area, accompanies)
        if participant_id in self.held:  # held muted by the mediator before dropping out
            participant.held = True
            participant.muted["audio"] = True
        self.participants[participant_id] = participant
        if participant.can("subscribe"):
            participant.subscribe = self._subscribe_session(participant)
        if self._adapt_task is None:
            self._adapt_task = asyncio.get_running_loop().create_task(self._adapt_loop())
            self._tasks.add(self._adapt_task)
            self._adapt_task.add_done_callback(self._task_done)
        if self._speaker_task is None and self.on_active_speaker is not None:
            self._speaker_task = asyncio.get_running_loop().create_task(self._speaker_loop())
            self._tasks.add(self._speaker_task)
            self._speaker_task.add_done_callback(self._task_done)
        self._refresh_area(area)
        self._state_changed()
        return participant

    async def renew(self, participant_id: str) -> None:
        """Fresh media connections for someone who is coming back (a dropped link, a new
        network address): aiortc cannot restart ICE, so a restart is a new connection. The
        participant keeps its place; its producers keep their consumers (viewers' and
        recorders') and are carried on by the next publish offer of the same kinds and codecs
        (see docs/protocol.md, "Coming back")."""
        participant = self.participant(participant_id)
        self.set_away(participant_id, False)
        old_pub, old_sub = participant.publish, participant.subscribe
        participant.publish = None
        if old_pub is not None:
            await old_pub.close()
        if participant.producers:
            self._park(participant)
        if old_sub is not None:
            participant.subscribe = None
            await old_sub.close()
        if participant.can("subscribe"):
            participant.subscribe = self._subscribe_session(participant)
            participant.subscribe.sync()
        self._state_changed()

    def set_away(self, participant_id: str, away: bool) -> None:
        """The participant's signaling connection dropped (True) or is back (False)."""
        participant = self.participants.get(participant_id)
        if participant is not None and participant.away != away:
            participant.away = away
            self._state_changed()

    def set_audio_only(self, participant_id: str, on: bool) -> None:
        """The viewer asked for no video (its link is poor, or it prefers so)."""
        participant = self.participant(participant_id)
        self.adaptation.link(participant.id).audio_only = bool(on)
        self._adapt_now()
        self._state_changed()

    def viewer_view(self, participant_id: str) -> dict:
        """What the server forwards of each publisher's video to this viewer, for its page."""
        link = self.adaptation.links.get(participant_id)
        order = {"paused": 0, "small": 1, "reduced": 2, "full": 3}
        video: dict[str, str] = {}
        if link is not None:
            for participant in self.participants.values():
                for producer in participant.producers.values():
                    level = link.levels.get(producer.id)
                    if level is not None and (participant.id not in video or order[level] < order[video[participant.id]]):
                        video[participant.id] = level
        return {"video": video, "audio_only": bool(link and link.audio_only)}

    def participant(self, participant_id: str) -> Participant:
        participant = self.participants.get(participant_id)
        if participant is None:
            raise RoomError("not_found", f"no participant {participant_id} in room {self.id}")
        return participant

    def admit(self, participant_id: str, *, by: Optional[str] = None) -> list[str]:
        """Out of the lobby into the main area. A party's interpreter or support person waiting in
        the lobby comes in with them; admitted alone, they go to where their party is (the main
        area while their party is not in the room or still waits). Returns who came in."""
        self._check_actor(by, "admit")
        participant = self.participant(participant_id)
        if participant.area != LOBBY:
            raise RoomError("bad_state", f"participant {participant_id} is not in the lobby")
        party = self.participants.get(participant.accompanies) if participant.accompanies else None
        area = party.area if party is not None and party.area != LOBBY else MAIN
        group = [participant] + [p for p in self.linked(participant_id) if p.area == LOBBY]
        self._set_areas(group, area)
        return [p.id for p in group]

    def linked(self, participant_id: str) -> list[Participant]:
        """The interpreters and support persons in the room who accompany this party."""
        return [p for p in self.participants.values() if p.accompanies == participant_id]

    async def deny(self, participant_id: str, *, reason: str = "denied", by: Optional[str] = None) -> list[str]:
        self._check_actor(by, "admit")
        if self.participant(participant_id).area != LOBBY:
            raise RoomError("bad_state", f"participant {participant_id} is not in the lobby")
        return await self.remove(participant_id, reason=reason)

    def move(self, participant_id: str, area: str, *, by: Optional[str] = None) -> list[str]:
        """Move to "main", a caucus id or "lobby". Media follows without a rejoin:
        what the new area may not see stops at once, then both sides renegotiate.

        A party's interpreters and support persons out of the lobby move with the party, in
        the same step (one state change). One of them alone may only go to the lobby, or to
        where their party is (the main area while the party is not in the room or waits in the
        lobby): never into another area than their party's (docs/procedure.md). Returns who moved."""
        self._check_actor(by, "move")
        self._require_area(area)
        participant = self.participant(participant_id)
        if participant.accompanies and area != LOBBY:
            party = self.participants.get(participant.accompanies)
            with_party = party.area if party is not None and party.area != LOBBY else MAIN
            if area != with_party:
                raise RoomError("linked", f"{participant.name} accompanies {participant.accompanies_name} and stays "
                                          "where that party is: move the party instead")
        group = [participant] + [p for p in self.linked(participant_id) if p.area != LOBBY]
        self._set_areas(group, area)
        return [p.id for p in group]

    def mute(self, participant_id: str, kind: str, muted: bool = True, *, by: Optional[str] = None,
             reason: Optional[str] = None) -> None:
        """Oneself (`by` None or equal to participant_id), or by someone with the
        "move" grant (the mediator). Muted producers stay negotiated but forward
        nothing, so unmuting needs no renegotiation. `reason` "bandwidth": the participant's
        page turned its camera off because its uplink cannot carry video."""
        if by is not None and by != participant_id:
            self._check_actor(by, "move")
        if kind not in KINDS:
            raise RoomError("bad_request", f"kind must be audio or video, not {kind!r}")
        if reason not in (None, "bandwidth") or (reason and (kind != "video" or not muted)):
            raise RoomError("bad_request", "reason may only be 'bandwidth', for turning one's own video off")
        participant = self.participant(participant_id)
        if kind == "audio" and not muted and participant.held and (by is None or by == participant_id):
            raise RoomError("forbidden", "The mediator holds your microphone muted; ask them to release it.")
        participant.muted[kind] = bool(muted)
        if kind == "video":
            participant.video_off_reason = reason if muted else None
        for producer in participant.producers.values():
            if producer.kind == kind and producer.role != "screen":  # a share is no camera
                producer.set_paused(bool(muted))
        self._state_changed()

    async def leave(self, participant_id: str) -> None:
        await self.remove(participant_id, reason="left")

    async def remove(self, participant_id: str, *, reason: str = "removed", by: Optional[str] = None) -> list[str]:
        """Release everything the participant holds: its producers (and every
        consumer of them), its consumers, both peer connections, its tasks.

        A party sent away (removed, denied, its link withdrawn) does not take its interpreters
        and support persons out of the room: they go back to the lobby, where the mediator lets
        them in again or removes them (docs/procedure.md). A party who leaves or drops keeps them
        where they are, as it is likely to come back. Returns who was sent to the lobby."""
        if by is not None and by != participant_id:
            self._check_actor(by, "move")
        participant = self.participants.pop(participant_id, None)
        if participant is None:
            raise RoomError("not_found", f"no participant {participant_id} in room {self.id}")
        self._unpark(participant_id)
        self.adaptation.forget(participant_id, list(participant.producers.values()))
        self._quality.pop(participant_id, None)
        for producer in list(participant.producers.values()):
            self._close_producer(participant, producer, reason="left")
        # Others stop consuming what is gone and renegotiate.
        self._refresh_area(participant.area)
        results = []
        for session in (participant.subscribe, participant.publish):
            if session is not None:
                results.append(session.close())
        for outcome in await asyncio.gather(*results, return_exceptions=True):
            if isinstance(outcome, BaseException):
                logger.warning("closing a connection of %s failed: %r", participant_id, outcome)
        participant.subscribe = participant.publish = None
        sent_back = []
        if reason not in ("left", "disconnected", "session_ended"):
            sent_back = [p for p in self.linked(participant_id) if p.area != LOBBY]
            self._set_areas(sent_back, LOBBY, notify=False)
        self._emit(self.on_participant_removed, participant_id, reason)
        self._state_changed()
        return [p.id for p in sent_back]

    # ------------------------------------------------------------------ caucuses

    def create_caucus(self, name: str, *, by: Optional[str] = None, caucus_id: Optional[str] = None) -> str:
        """A new caucus; `caucus_id` only when a room comes back on another node as it was."""
        self._check_actor(by, "move")
        self._require_open()
        caucus_id = caucus_id or new_id("caucus-")
        self.caucuses[caucus_id] = str(name)
        self._state_changed()
        return caucus_id

    def close_caucus(self, caucus_id: str, *, by: Optional[str] = None) -> None:
        """Everyone in the caucus returns to the main area."""
        self._check_actor(by, "move")
        if caucus_id not in self.caucuses:
            raise RoomError("not_found", f"no caucus {caucus_id}")
        self._set_areas([p for p in self.participants.values() if p.area == caucus_id], MAIN, notify=False)
        del self.caucuses[caucus_id]
        self.caucus_ends.pop(caucus_id, None)
        self._state_changed()

    def set_caucus_timer(self, caucus_id: str, minutes: int, *, by: Optional[str] = None) -> Optional[float]:
        """The caucus ends (as a countdown its members see) `minutes` from now; 0 takes the timer off."""
        self._check_actor(by, "move")
        if caucus_id not in self.caucuses:
            raise RoomError("not_found", f"no caucus {caucus_id}")
        if minutes:
            self.caucus_ends[caucus_id] = time.time() + 60 * minutes
        else:
            self.caucus_ends.pop(caucus_id, None)
        self._state_changed()
        return self.caucus_ends.get(caucus_id)

    # ------------------------------------------------------------------ hands and muting everyone

    def raise_hand(self, participant_id: str) -> bool:
        """False when the hand was up already (its place in the queue is kept)."""
        participant = self.participant(participant_id)
        if participant.area == LOBBY:
            raise RoomError("in_lobby", "You can raise your hand once the mediator has let you in.")
        if participant.hand is not None:
            return False
        self._hands += 1
        participant.hand = self._hands
        self._state_changed()
        return True

    def lower_hand(self, participant_id: str, *, by: Optional[str] = None) -> bool:
        """One's own hand, or anyone's by the mediator ("move"). False when it was not up."""
        if by is not None and by != participant_id:
            self._check_actor(by, "move")
        participant = self.participant(participant_id)
        if participant.hand is None:
            return False
        participant.hand = None
        self._state_changed()
        return True

    def hands(self) -> list[str]:
        """Raised hands, first raised first."""
        up = [p for p in self.participants.values() if p.hand is not None]
        return [p.id for p in sorted(up, key=lambda p: p.hand or 0)]

    def mute_all(self, *, by: str, hold: bool) -> list[str]:
        """Everyone's microphone off but the mediators'; with `hold` they cannot turn it on again
        themselves until released, without it the hold of earlier is let go. Returns who was muted."""
        self._check_actor(by, "move")
        done = []
        for participant in list(self.participants.values()):
            if participant.id == by or participant.role == "mediator" or participant.area == LOBBY:
                continue
            self.mute(participant.id, "audio", True, by=by)
            participant.held = hold
            (self.held.add if hold else self.held.discard)(participant.id)
            done.append(participant.id)
        if not hold:
            self.held.clear()
        self._state_changed()
        return done

    def release(self, participant_id: Optional[str] = None, *, by: Optional[str] = None) -> list[str]:
        """Let one participant (or, with None, everyone) unmute themselves again; their mic stays off."""
        self._check_actor(by, "move")
        if participant_id is not None:
            targets = [self.participant(participant_id)]
        else:
            targets = [p for p in self.participants.values() if p.held]
        for participant in targets:
            participant.held = False
            self.held.discard(participant.id)
        if participant_id is None:
            self.held.clear()
        self._state_changed()
        return [p.id for p in targets]

    # ------------------------------------------------------------------ media / signaling

    async def handle_publish_offer(self, participant_id: str, sdp: Any, type: Any = "offer",
                                   tracks: Optional[dict[str, str]] = None) -> dict:
        """The client's `rtc.offer` on its publish connection -> {"sdp", "type"} answer.
        `tracks`: mid -> "small" for the small encoding of the camera, "screen" for a shared
        screen (PublishSession.handle_offer; docs/protocol.md, "Screen sharing")."""
        participant = self.participant(participant_id)
        answer, added, removed = await self._publish_session(participant).handle_offer(sdp, type, tracks)
        if self.participants.get(participant_id) is not participant:
            raise RoomError("gone", f"participant {participant_id} left during negotiation")
        for producer in removed:
            if producer.role == "small":
                camera = self._camera_of(participant, producer)
                if camera is not None:
                    camera.set_small(None)
                producer.close()
            else:
                self._close_producer(participant, producer)
        for producer in added:
            if producer.role == "small":
                continue
            participant.producers[producer.id] = producer
            self._emit(self.on_producer_added, producer)
            if producer.role == "screen":
                self._emit(self.on_share, producer, True, None, None)
        for producer in added:
            if producer.role == "small":
                camera = next((p for p in participant.producers.values() if p.kind == "video" and not p.closed), None)
                if camera is None:
                    producer.close()  # no camera to be the small copy of
                else:
                    camera.set_small(producer)
        if added or removed:
            self._refresh_area(participant.area)
            self._state_changed()
        return {"sdp": self._outgoing_sdp(answer.sdp), "type": answer.type}

    async def handle_subscribe_answer(self, participant_id: str, sdp: Any, type: Any = "answer") -> None:
        """The client's `rtc.answer` to the latest subscribe offer."""
        session = self.participant(participant_id).subscribe
        if session is None:
            raise RoomError("bad_state", f"participant {participant_id} has no subscribe connection")
        await session.handle_answer(sdp, type)

    async def add_ice_candidate(
        self,
        participant_id: str,
        target: str,
        candidate: Optional[str],
        sdp_mid: Optional[str] = None,
        sdp_mline_index: Optional[int] = None,
    ) -> None:
        """A trickled browser candidate (`rtc.candidate`); target "publish" or "subscribe"."""
        participant = self.participant(participant_id)
        if target == "publish":
            # May overtake the offer it belongs to: buffered by the session.
            session: Any = self._publish_session(participant)
        elif target == "subscribe":
            session = participant.subscribe
        else:
            raise RoomError("bad_request", f"target must be publish or subscribe, not {target!r}")
        if session is None:
            raise RoomError("bad_state", f"no {target} connection yet")
        await session.add_candidate(candidate, sdp_mid, sdp_mline_index)

    def attach_sink(self, producer_id: str, sink: ConsumerSink, *, label: str = "recorder") -> Consumer:
        """Consume a producer into any sink (a recorder): same frames a viewer gets,
        starting at the next keyframe. Close the returned consumer to detach."""
        producer = self.producer(producer_id)
        consumer = Consumer(new_id("co"), producer, sink, label, on_closed=self._extra_consumer_closed)
        self._extra_consumers[consumer.id] = consumer
        consumer.activate()
        return consumer

    def producer(self, producer_id: str) -> Producer:
        for participant in self.participants.values():
            producer = participant.producers.get(producer_id)
            if producer is not None:
                return producer
        raise RoomError("not_found", f"no producer {producer_id}")

    def producers(self) -> list[Producer]:
        return [p for q in self.participants.values() for p in q.producers.values()]

    # ------------------------------------------------------------------ state

    def silent(self, participant_id: str, now: Optional[float] = None) -> bool:
        """Nothing has come from this participant's media for RECONNECTING_AFTER seconds, although
        it was sending or receiving media: its link is down, or it is changing networks."""
        participant = self.participants.get(participant_id)
        if participant is None:
            return False
        heard = [p.last_packet for p in participant.producers.values() if not p.closed]
        if participant.subscribe is not None:
            heard.append(participant.subscribe.last_rtcp())
        heard = [t for t in heard if t is not None]
        if not heard:
            return False
        return (now if now is not None else time.monotonic()) - max(heard) > RECONNECTING_AFTER

    def connection(self, participant_id: str, now: Optional[float] = None) -> str:
        """"reconnecting" while its signaling is away or its media silent, else "connected"."""
        participant = self.participants.get(participant_id)
        if participant is not None and participant.away:
            return "reconnecting"
        return "reconnecting" if self.silent(participant_id, now) else "connected"

    def state(self) -> dict:
        """The `room.state` payload."""
        now = time.monotonic()
        return {
            "id": self.id,
            "participants": [{**p.info(), "connection": self.connection(p.id, now),
                              "quality": self._quality.get(p.id),
                              "link": self.adaptation.details(p, self.adaptation.rate_of)}
                             for p in self.participants.values()],
            "caucuses": [{"id": cid, "name": name, "ends_at": iso_time(self.caucus_ends.get(cid))}
                         for cid, name in self.caucuses.items()],
            "recording": self.recording,
            "hands": self.hands(),
            "speakers": {area: pid for area, pid in self.speakers.active.items() if pid},
        }

    def delivery_counts(self) -> dict[tuple[str, str], int]:
        """Frames delivered so far per (publisher id, subscriber id), including
        consumers already closed. Proves which areas saw whom."""
        counts = collections.Counter(self._delivered)
        for participant in self.participants.values():
            if participant.subscribe is not None:
                for consumer in participant.subscribe.consumers.values():
                    counts[(consumer.producer.participant_id, consumer.subscriber_id)] += consumer.frames
        for consumer in self._extra_consumers.values():
            counts[(consumer.producer.participant_id, consumer.subscriber_id)] += consumer.frames
        return dict(counts)

    async def close(self) -> None:
        """Remove everybody and release every resource."""
        if self.closed:
            return
        for participant_id in list(self.participants):
            try:
                await self.remove(participant_id, reason="session_ended")
            except RoomError:
                pass
        self.closed = True
        for participant_id in list(self._park_timers):
            self._unpark(participant_id)
        for consumer in list(self._extra_consumers.values()):
            consumer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ internals

    def _publish_session(self, participant: Participant) -> PublishSession:
        participant.require("publish")
        if participant.publish is None:
            participant.publish = PublishSession(
                participant,
                make_configuration(self._ice_servers),
                on_state=lambda state, pid=participant.id: self._connection_state(pid, "publish", state),
                on_closed_by_peer=lambda pid=participant.id: self._publish_closed_by_peer(pid),
                reclaim=lambda kind, codec, role, pid=participant.id: self._reclaim(pid, kind, codec, role),
                may_share=lambda pid=participant.id: self._check_share(pid),
            )
        return participant.publish

    def _subscribe_session(self, participant: Participant) -> SubscribeSession:
        return SubscribeSession(
            participant,
            make_configuration(self._ice_servers),
            self.router,
            on_offer=self._deliver_offer,
            on_state=lambda state, pid=participant.id: self._connection_state(pid, "subscribe", state),
            on_consumer_closed=self._consumer_closed,
            forwarding=self.forwarding,
        )

    async def _adapt_loop(self) -> None:
        while not self.closed:
            await asyncio.sleep(TICK)
            try:
                self._adapt_now()
            except Exception:  # noqa: BLE001 - the next tick tries again; media keeps flowing
                logger.exception("adaptation pass of room %s failed", self.id)

    async def _speaker_loop(self) -> None:
        while not self.closed:
            await asyncio.sleep(SPEAKER_SAMPLE)
            try:
                for area, pid in self.speakers.sample(self.participants, time.monotonic()).items():
                    self._emit(self.on_active_speaker, area, pid)
            except Exception:  # noqa: BLE001 - the next sample tries again
                logger.exception("speaker detection of room %s failed", self.id)

    def _adapt_now(self) -> None:
        changed = self.adaptation.tick(self.participants)
        quality = {pid: self.adaptation.quality(p) for pid, p in self.participants.items()}
        self._ticks += 1
        # Levels and quality at once; the figures behind them (the mediator's details) every 2 s.
        if changed or quality != self._quality or self._ticks % int(2 / TICK) == 0:
            self._quality = quality
            self._state_changed()

    def _park(self, participant: Participant) -> None:
        # The small copy of the camera belonged to the connection that is gone: the renewed one
        # brings a new one (its viewers go back to the camera's stream meanwhile).
        for producer in participant.producers.values():
            producer.set_small(None)
        self._unpark(participant.id)
        self._parked[participant.id] = [p for p in participant.producers.values() if not p.closed]
        self._park_timers[participant.id] = asyncio.get_running_loop().call_later(
            self.renew_grace, self._park_expired, participant.id)

    def _unpark(self, participant_id: str) -> list[Producer]:
        timer = self._park_timers.pop(participant_id, None)
        if timer is not None:
            timer.cancel()
        return self._parked.pop(participant_id, [])

    def _reclaim(self, participant_id: str, kind: str, codec: Any, role: str = "camera") -> Optional[Producer]:
        parked = self._parked.get(participant_id) or []
        for producer in parked:
            if (producer.kind == kind and producer.role == role and not producer.closed
                    and producer.mime == codec.mimeType.lower()
                    and getattr(producer.codec, "parameters", None) == getattr(codec, "parameters", None)):
                parked.remove(producer)
                if not parked:
                    self._unpark(participant_id)
                return producer
        return None

    def _park_expired(self, participant_id: str) -> None:
        # The renewed connection did not carry these on (the camera is off now, or the
        # participant never came back): they are gone.
        self._park_timers.pop(participant_id, None)
        participant = self.participants.get(participant_id)
        leftovers = self._parked.pop(participant_id, [])
        if participant is None or not leftovers:
            return
        for producer in leftovers:
            self._close_producer(participant, producer, reason="connection")
        self._refresh_area(participant.area)
        self._state_changed()

    def _connection_state(self, participant_id: str, target: str, state: str) -> None:
        self._emit(self.on_connection_state, participant_id, target, state)

    def _publish_closed_by_peer(self, participant_id: str) -> None:
        # The client's publish connection went away without a leave (its link dropped, or its
        # page is making a new one): its producers wait renew_grace for a new connection to
        # carry them on, then close; the next offer gets a fresh connection.
        participant = self.participants.get(participant_id)
        if participant is None:
            return
        if participant.publish is not None and participant.publish.closed:
            participant.publish = None
        if participant.producers:
            self._park(participant)

    def _require_open(self) -> None:
        if self.closed:
            raise RoomError("gone", f"room {self.id} is closed")

    def _require_area(self, area: str) -> None:
        if area not in (LOBBY, MAIN) and area not in self.caucuses:
            raise RoomError("not_found", f"no area {area!r} (lobby, main or a caucus id)")

    def _check_actor(self, by: Optional[str], grant: str) -> None:
        if by is not None:
            self.participant(by).require(grant)

    def _set_area(self, participant: Participant, area: str, notify: bool = True) -> None:
        self._set_areas([participant], area, notify)

    def _set_areas(self, participants: list[Participant], area: str, notify: bool = True) -> None:
        """Several people to one area at once (a party and those who accompany it): one
        re-check of everyone's consumers, one state change."""
        moved = [p for p in participants if p.area != area]
        if not moved:
            return
        for participant in moved:
            # A share is meant for the area it began in: moving ends it (docs/protocol.md, "Screen sharing").
            self._end_share(participant, "moved")
            participant.area = area
            if area == LOBBY:  # sent back to the lobby: waiting anew, hand down
                participant.lobby_since, participant.hand = time.time(), None
        self._refresh_area(area)  # re-checks everyone (see _refresh_area)
        if notify:
            self._state_changed()

    def _refresh_area(self, area: str) -> None:
        # Everyone who was or is in the area re-checks its consumers: stale
        # consumers close immediately, new ones are negotiated.
        # (Everyone, not just the area: cheap at mediation sizes, obviously complete.)
        for participant in list(self.participants.values()):
            if participant.subscribe is not None:
                participant.subscribe.sync()

    @staticmethod
    def _camera_of(participant: Participant, small: Producer) -> Optional[Producer]:
        return next((p for p in participant.producers.values() if p.small is small), None)

    def _close_producer(self, participant: Participant, producer: Producer, *, reason: str = "stopped",
                        by: Optional[str] = None) -> None:
        if participant.producers.pop(producer.id, None) is None and producer.closed:
            return
        producer.close()  # closes every consumer -> their slots go inactive
        self._emit(self.on_producer_removed, producer)
        if producer.role == "screen":
            self._emit(self.on_share, producer, False, reason, by)

    # ------------------------------------------------------------------ screen sharing

    @staticmethod
    def share_of(participant: Participant) -> Optional[Producer]:
        """The participant's live screen share, if any."""
        return next((p for p in participant.producers.values() if p.role == "screen" and not p.closed), None)

    def sharing(self, area: str) -> Optional[Participant]:
        """Who shares a screen in `area` (one at a time)."""
        return next((p for p in self.participants.values() if p.area == area and self.share_of(p)), None)

    def _check_share(self, participant_id: str) -> None:
        participant = self.participant(participant_id)
        if participant.area == LOBBY:
            raise RoomError("in_lobby", "You can share your screen once the mediator has let you in.")
        other = self.sharing(participant.area)
        if other is not None and other is not participant:
            raise RoomError("bad_state", f"{other.name} is sharing a screen here; one share at a time "
                                         "(the mediator can stop it).")

    def stop_share(self, participant_id: str, *, by: Optional[str] = None) -> Producer:
        """End a participant's share on the server: oneself, or anyone's by the mediator ("move").
        The sharer's page is told to stop its capture (the on_share callback)."""
        if by is not None and by != participant_id:
            self._check_actor(by, "move")
        participant = self.participant(participant_id)
        producer = self.share_of(participant)
        if producer is None:
            raise RoomError("bad_state", f"{participant.name} is not sharing a screen.")
        self._end_share(participant, "stopped_by", by or participant_id)
        return producer

    def _end_share(self, participant: Participant, reason: str, by: Optional[str] = None) -> None:
        producer = self.share_of(participant)
        if producer is None:
            return
        if participant.publish is not None:
            participant.publish.drop(producer)
        for parked in self._parked.values():
            if producer in parked:
                parked.remove(producer)
        self._close_producer(participant, producer, reason=reason, by=by)
        self._refresh_area(participant.area)
        self._state_changed()

    def _consumer_closed(self, consumer: Consumer) -> None:
        self._delivered[(consumer.producer.participant_id, consumer.subscriber_id)] += consumer.frames

    def _extra_consumer_closed(self, consumer: Consumer) -> None:
        self._extra_consumers.pop(consumer.id, None)
        self._consumer_closed(consumer)

    def _outgoing_sdp(self, sdp: str) -> str:
        """Every SDP the server sends (publish answers, subscribe offers) passes here:
        the announced media addresses are added to its candidates."""
        return announce(sdp, self.media_addresses) if self.media_addresses else sdp

    async def _deliver_offer(self, participant_id: str, message: dict) -> None:
        if self.on_subscribe_offer is None:
            raise RoomError("internal", "no on_subscribe_offer callback")
        message = {**message, "sdp": self._outgoing_sdp(message["sdp"])}
        await maybe_await(self.on_subscribe_offer(participant_id, message))

    def _state_changed(self) -> None:
        self._emit(self.on_state_changed, self)

    def _emit(self, callback: Callback, *args: Any) -> None:
        if callback is None:
            return
        try:
            result = callback(*args)
        except Exception:
            logger.exception("room %s callback %r failed", self.id, callback)
            return
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("room %s callback task failed", self.id, exc_info=task.exception())
