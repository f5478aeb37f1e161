"""With REDIS_URL the socket.io manager is python-socketio's Redis manager on a real Redis, and a room's events still reach its clients."""
from __future__ import annotations

import os
import uuid

import pytest

from tests.rooms.clients import wait_for

from .peer import Peer

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def settings(settings):
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not available at {REDIS_URL}: {exc} (CI must have it)", pytrace=False)
        pytest.skip(f"Redis is not available at {REDIS_URL}: {exc}")
    settings.redis_url = REDIS_URL
    settings.redis_prefix = f"mediation-test-{uuid.uuid4().hex[:8]}:"  # no other deployment's nodes
    settings.identity_check = False
    return settings


async def test_room_events_travel_through_redis(live, media):
    import socketio
    assert isinstance(live.app["hub"].sio.manager, socketio.AsyncRedisManager)
    mediator = Peer(live.url, await live.token("mediator"), media)
    party = Peer(live.url, await live.token("party", party_id=live.party_ids[0]), media)
    try:
        assert (await mediator.join())["ok"]
        assert (await party.join())["in_lobby"]
        await wait_for(lambda: mediator.events["lobby.waiting"], what="lobby.waiting via Redis")
        assert (await mediator.call("lobby.admit", {"participant_id": party.me["id"]}))["ok"]
        assert (await party.call("chat.send", {"text": "经由 Redis"}))["ok"]
        await wait_for(lambda: mediator.events["chat.message"], what="chat via Redis")
        await party.publish()
        await mediator.publish()
        await wait_for(lambda: mediator.frames_from(party.me["id"]) > 3, timeout=10, what="media")
    finally:
        await party.close()
        await mediator.close()
