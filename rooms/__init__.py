"""Live rooms: participants, roles and grants, lobby, caucus sub-rooms, and the
media forwarding (router, producers, consumers) on aiortc, without decoding or
re-encoding. Imports nothing of HTTP, databases or socket.io."""

from .errors import HookError, RoomError
from .frames import EncodedFrame
from .media import Consumer, ConsumerSink, Producer
from .participant import DEFAULT_GRANTS, GRANTS, LOBBY, MAIN, ROLES, Participant
from .room import Room
from .router import Router

__all__ = [
    "Consumer",
    "ConsumerSink",
    "DEFAULT_GRANTS",
    "EncodedFrame",
    "GRANTS",
    "HookError",
    "LOBBY",
    "MAIN",
    "Participant",
    "Producer",
    "ROLES",
    "Room",
    "RoomError",
    "Router",
]
