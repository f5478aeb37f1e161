"""Recording with consent, for one live room.

The mediator asks; everyone present is asked; the recording starts only when every party
has agreed (a party's refusal cancels it; an expert's or observer's refusal keeps only their
own media out). Someone who arrives while it runs is asked on arrival and is not recorded
until they agree. Caucus periods are recorded only where the mediator enabled it for that
caucus. Which producers are recorded is recomputed from the room after every change.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rooms.participant import LOBBY, MAIN

if TYPE_CHECKING:
    from signaling.hub import Hub, LiveRoom

log = logging.getLogger("mediation.recording")

ASKED, YES, NO = "asked", "yes", "no"


class ConsentError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class RecordingController:
    def __init__(self, hub: "Hub", live: "LiveRoom", recorder_factory):
        self.hub = hub
        self.live = live
        self.recorder_factory = recorder_factory  # () -> a recorder with record_producer/stop_producer/stop
        self.state = "off"  # off | pending | on | stopping
        self.consent: dict[str, str] = {}
        self.caucus_enabled: set[str] = set()
        self.recorder: Any = None
        self.recorded: set[str] = set()  # producer ids being written

    # --- what clients see -----------------------------------------------------------------

    def view(self) -> dict:
        return {"active": self.state == "on", "pending": self.state == "pending", "consent": dict(self.consent),
                "caucuses_enabled": sorted(self.caucus_enabled)}

    def _present(self) -> dict[str, Any]:
        return {pid: p for pid, p in self.live.room.participants.items() if p.area != LOBBY}

    # --- consent ---------------------------------------------------------------------------

    async def request(self, by: str) -> None:
        if self.state != "off":
            raise ConsentError("conflict", "Recording is already running or being asked for.")
        self.state = "pending"
        self.consent = {}
        for pid, p in self._present().items():
            self.consent[pid] = YES if pid == by else ASKED
        await self.hub.record_step(self.live, by, "recording.requested", {"asked": sorted(self.consent)})
        for pid, answer in list(self.consent.items()):
            if answer == ASKED:
                await self.hub.emit_to(self.live, pid, "recording.consent_request", {"by": by})
        await self._settle()

    async def ask_newcomer(self, pid: str) -> None:
        if self.state in ("pending", "on") and self.consent.get(pid) != YES:
            self.consent[pid] = ASKED
            await self.hub.emit_to(self.live, pid, "recording.consent_request", {"by": None})

    async def answer(self, pid: str, agree: bool) -> None:
        if self.state not in ("pending", "on") or self.consent.get(pid) != ASKED:
            raise ConsentError("not_asked", "You have not been asked to consent to a recording.")
        self.consent[pid] = YES if agree else NO
        p = self.live.room.participants.get(pid)
        await self.hub.record_step(self.live, pid, "recording.consent", {"agree": agree}, self_action=True)
        if not agree and p is not None and p.role == "party" and self.state == "pending":
            self.state = "off"
            await self.hub.record_step(self.live, pid, "recording.refused", {}, self_action=True)
            await self.hub.to_grant_holders(self.live, "record", "recording.refused",
                                            {"participant_id": pid, "name": p.name})
            self.consent = {}
        await self._settle()

    async def _settle(self) -> None:
        if self.state == "pending":
            parties = [pid for pid, p in self._present().items() if p.role == "party"]
            if all(self.consent.get(pid) == YES for pid in parties) and \
                    all(v != ASKED for pid, v in self.consent.items() if pid in parties):
                self.recorder = self.recorder_factory()
                self.state = "on"
                await self.hub.record_step(self.live, None, "recording.started", {})
        self.sync()
        self.hub.schedule_state(self.live)

    # --- which media is written --------------------------------------------------------------

    def _wanted(self, participant) -> bool:
        if self.state != "on" or self.consent.get(participant.id) != YES:
            return False
        return participant.area == MAIN or participant.area in self.caucus_enabled

    def sync(self) -> None:
        """Record whom the rules allow, pause whom they don't (a pause ends that person's file
        segment, so the timeline shows a gap), and let go of producers that are gone."""
        if self.recorder is None or self.state != "on":
            return
        room, rec = self.live.room, self.recorder
        live_ids = set()
        for participant in list(room.participants.values()):
            wanted = self._wanted(participant)
            producers = [p for p in participant.producers.values() if not p.closed]
            live_ids.update(p.id for p in producers)
            try:
                if wanted:
                    for producer in producers:
                        if producer.id not in self.recorded:
                            rec.record_producer(room, producer, name=participant.name, role=participant.role)
                            self.recorded.add(producer.id)
                    if rec.is_paused(participant.id):
                        rec.resume_participant(participant.id)
                elif any(p.id in self.recorded for p in producers) and not rec.is_paused(participant.id):
                    rec.pause_participant(participant.id)
            except Exception:  # noqa: BLE001 - a recorder fault must not break the room
                log.exception("recording %s: could not apply the rules", participant.id)
        for gone in self.recorded - live_ids:
            self._stop_producer(gone)

    def _stop_producer(self, producer_id: str) -> None:
        self.recorded.discard(producer_id)
        try:
            self.recorder.stop_producer(producer_id)
        except Exception:  # noqa: BLE001
            log.exception("could not stop recording producer %s", producer_id)

    async def set_caucus(self, caucus_id: str, enabled: bool) -> None:
        (self.caucus_enabled.add if enabled else self.caucus_enabled.discard)(caucus_id)
        self.sync()
        self.hub.schedule_state(self.live)

    async def stop(self):
        """Stop writing; returns the recorder's manifest (or None when nothing was recording)."""
        if self.state == "pending":
            self.state = "off"
            self.consent = {}
            self.hub.schedule_state(self.live)
            return None
        if self.state != "on" or self.recorder is None:
            raise ConsentError("not_recording", "Nothing is being recorded.")
        self.state = "stopping"
        recorder, self.recorder = self.recorder, None
        self.recorded.clear()
        try:
            manifest = await recorder.stop()
        finally:
            self.state = "off"
            self.consent = {}
            self.hub.schedule_state(self.live)
        return manifest
