"""Fixtures for the rooms/ suite: a Room wired to real aiortc clients on loopback."""

from __future__ import annotations

import pytest

from rooms import Room

from .clients import Client, Media


@pytest.fixture(scope="session")
def media() -> Media:
    return Media()


class Harness:
    """A room plus the clients of its participants; on_subscribe_offer is routed to
    the right client exactly as the signaling layer would emit `rtc.offer`."""

    def __init__(self, media: Media, **room_options) -> None:
        self.media = media
        self.clients: dict[str, Client] = {}
        self.removed: list[tuple[str, str]] = []
        self.room = Room(
            "room-1",
            on_subscribe_offer=self._on_offer,
            on_participant_removed=lambda pid, reason: self.removed.append((pid, reason)),
            **room_options,
        )

    def _on_offer(self, participant_id: str, message: dict) -> None:
        client = self.clients.get(participant_id)
        if client is not None:
            client.on_offer(message)

    async def join(self, pid: str, role: str = "party", *, area: str = "main", publish: bool = True) -> Client:
        self.room.join(pid, pid.title(), role, area=area)
        client = Client(self.room, pid, self.media)
        self.clients[pid] = client
        if publish:
            await client.publish()
        return client

    async def close(self) -> None:
        await self.room.close()
        for client in self.clients.values():
            await client.close()


@pytest.fixture
async def harness(media):
    h = Harness(media)
    yield h
    await h.close()


@pytest.fixture(params=["packets", "frames"])
async def each_path(request, media):
    """A harness per forwarding path (rooms/media.py): the packet path (the default) and the
    frame path (FORWARDING=frames)."""
    h = Harness(media, forwarding=request.param)
    yield h
    await h.close()
