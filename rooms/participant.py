"""Participants: who is in a room, with which role, grants, area and mute state."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from .errors import RoomError

if TYPE_CHECKING:
    from .media import Producer
    from .peers import PublishSession, SubscribeSession

LOBBY = "lobby"
MAIN = "main"

ROLES = ("party", "mediator", "expert", "observer", "interpreter", "support")
# Roles that accompany one party (docs/procedure.md, "Interpreters and support persons"): they go
# where their party goes, and are heard there like the party.
LINKED_ROLES = ("interpreter", "support")
GRANTS = frozenset({"publish", "subscribe", "admit", "invite", "move", "record", "end"})
DEFAULT_GRANTS: dict[str, frozenset[str]] = {
    "mediator": GRANTS,
    "party": frozenset({"publish", "subscribe"}),
    "expert": frozenset({"publish", "subscribe"}),
    # A clerk or judge watching: sees and hears, is never seen or heard.
    "observer": frozenset({"subscribe"}),
    # Speak and are heard like the party they accompany, nothing more.
    "interpreter": frozenset({"publish", "subscribe"}),
    "support": frozenset({"publish", "subscribe"}),
}
KINDS = ("audio", "video")


@dataclass(eq=False)
class Participant:
    id: str
    name: str
    role: str
    grants: set[str]
    area: str = LOBBY
    muted: dict[str, bool] = field(default_factory=lambda: {"audio": False, "video": False})
    joined_at: float = field(default_factory=time.time)
    producers: dict[str, "Producer"] = field(default_factory=dict)
    publish: Optional["PublishSession"] = None
    subscribe: Optional["SubscribeSession"] = None
    away: bool = False  # its signaling connection dropped; its place is held (Room.set_away)
    video_off_reason: Optional[str] = None  # "bandwidth": its page turned its camera off itself
    # Room tools (docs/protocol.md, "Room tools"): since when it waits in the lobby (time.time()),
    # its raised hand (the room's raise counter: the queue's order), held muted by the mediator.
    lobby_since: Optional[float] = None
    hand: Optional[int] = None
    held: bool = False
    # An interpreter or support person: the participant id and name of the party they accompany.
    accompanies: Optional[str] = None
    accompanies_name: str = ""

    def can(self, grant: str) -> bool:
        return grant in self.grants

    def require(self, grant: str) -> None:
        if grant not in self.grants:
            raise RoomError("forbidden", f"participant {self.id} lacks the {grant!r} grant")

    def info(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "where": self.area,
            "grants": sorted(self.grants),
            "muted": dict(self.muted),
            "video_off_reason": self.video_off_reason,
            "producers": [p.info() for p in self.producers.values() if not p.closed],
            "lobby_since": iso_time(self.lobby_since) if self.area == LOBBY else None,
            "hand": self.hand,
            "held": self.held,
            "accompanies": self.accompanies,
            "accompanies_name": self.accompanies_name if self.accompanies else None,
        }


def iso_time(at: Optional[float]) -> Optional[str]:
    return dt.datetime.fromtimestamp(at, dt.timezone.utc).isoformat() if at is not None else None


def make_participant(
    participant_id: str,
    name: str,
    role: str,
    grants: Optional[set[str]] = None,
    area: str = LOBBY,
    accompanies: Optional[tuple[str, str]] = None,
) -> Participant:
    if role not in ROLES:
        raise RoomError("bad_request", f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if grants is None:
        grants = set(DEFAULT_GRANTS[role])
    unknown = set(grants) - GRANTS
    if unknown:
        raise RoomError("bad_request", f"unknown grants: {', '.join(sorted(unknown))}")
    if (role in LINKED_ROLES) != (accompanies is not None):
        raise RoomError("bad_request", f"role {role!r} {'needs' if role in LINKED_ROLES else 'has no'} "
                                       "party it accompanies")
    return Participant(id=participant_id, name=name, role=role, grants=set(grants), area=area,
                       lobby_since=time.time() if area == LOBBY else None,
                       accompanies=accompanies[0] if accompanies else None,
                       accompanies_name=accompanies[1] if accompanies else "")
