"""Shapes of every client event. Anything else is refused with a clear error ack."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

SDP = Annotated[str, StringConstraints(min_length=10, max_length=200_000)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=80)]


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Join(Event):
    token: Annotated[str, StringConstraints(min_length=10, max_length=4096)]


class Offer(Event):
    sdp: SDP
    type: Literal["offer"]


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


class MuteOther(Event):
    participant_id: Id
    kind: Literal["audio", "video"]


class Chat(Event):
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class Empty(Event):
    pass
