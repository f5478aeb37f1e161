"""Shapes of every client event. Anything else is refused with a clear error ack.

Ids and text follow the same rules as the HTTP API's (server/core/schemas.py; docs/api.md,
"Accepted input"): database ids within ID_MAX, no control characters but tab and line breaks.
"""
from __future__ import annotations

from typing import Optional, Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from server.core.schemas import Checked, Id as RowId

SDP = Annotated[str, StringConstraints(min_length=10, max_length=200_000)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=80)]


class Event(Checked):
    model_config = ConfigDict(extra="forbid")


class Join(Event):
    token: Annotated[str, StringConstraints(min_length=10, max_length=4096)]
    # The secret the first join on this device returned (signaling/devices.py).
    resume: Annotated[str, StringConstraints(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")] | None = None


class Offer(Event):
    sdp: SDP
    type: Literal["offer"]
    # mid -> role of a publish m-line other than the camera and microphone: "small", the small
    # encoding of the camera for viewers on narrow links; "screen", a shared screen (docs/protocol.md).
    tracks: Optional[Annotated[dict[Annotated[str, StringConstraints(min_length=1, max_length=32)],
                                    Literal["small", "screen"]],
                               Field(max_length=4)]] = None


class Answer(Event):
    sdp: SDP
    type: Literal["answer"]


class Candidate(Event):
    candidate: Annotated[str, StringConstraints(max_length=2000)] | None = None
    sdpMid: Annotated[str, StringConstraints(max_length=64)] | None = None
    sdpMLineIndex: int | None = Field(default=None, ge=0, le=1000)
    target: Literal["publish", "subscribe"]
    usernameFragment: Annotated[str, StringConstraints(max_length=256)] | None = None


class ParticipantRef(Event):
    participant_id: Id


class Deny(Event):
    participant_id: Id
    reason: Annotated[str, StringConstraints(max_length=300)] | None = None


class Mute(Event):
    kind: Literal["audio", "video"]
    muted: bool
    # "bandwidth": the page turned its own camera off because its uplink cannot carry video.
    reason: Optional[Literal["bandwidth"]] = None


class AudioOnly(Event):
    on: bool


class MuteOther(Event):
    participant_id: Id
    kind: Literal["audio", "video"]


class Chat(Event):
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class Empty(Event):
    pass


class CaucusCreate(Event):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]
    minutes: int | None = Field(default=None, ge=1, le=240)  # a timer its members see (caucus.timer)


class CaucusRef(Event):
    caucus_id: Id


class Move(Event):
    participant_id: Id
    to: Id


class InviteExpert(Event):
    expert_id: RowId | None = None
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = None
    specialty: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)] | None = None
    organisation: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    direct: bool = False
    expires_in: int | None = Field(default=None, ge=60, le=24 * 3600)


class InviteRevoke(Event):
    invite_id: RowId


class ExpertsList(Event):
    specialty: Annotated[str, StringConstraints(max_length=40)] | None = None
    level: Literal["county", "town"] | None = None


class Consent(Event):
    agree: bool


class CaucusRecording(Event):
    caucus_id: Id
    enabled: bool
