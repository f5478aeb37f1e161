"""The socket.io server on the aiohttp app: the hub (signaling/hub.py) with the event modules
that extend it (agreement_events.py, procedure_events.py, room_tools.py, evidence_events.py,
screen_share.py). Called by server/http/app.py."""
from __future__ import annotations

import json
import re
from typing import Any

import socketio

from server.core import jsonin
from signaling import agreement_events, evidence_events, procedure_events, room_tools, screen_share
from signaling.hub import Hub

MAX_MESSAGE_BYTES = 512 * 1024  # one Engine.IO message (an SDP offer is at most 200 KB)
_EVENT_NAME = re.compile(r'\s*\[\s*("(?:[^"\\]|\\.){1,100}")')


class BoundedJson:
    """The JSON of Engine.IO and socket.io packets, bounded in depth before parsing
    (server/core/jsonin.py; the size is bounded by MAX_MESSAGE_BYTES)."""
    dumps = staticmethod(json.dumps)

    @staticmethod
    def loads(text, *args, **kwargs):
        return jsonin.loads(text)


class BoundedPacket(socketio.packet.Packet):
    """A socket.io packet whose payload nests too deeply still reaches its event's handler, with
    the refusal in place of the payload, so the client gets an error ack (Hub._wrap) rather than
    silence; a packet without an event name is dropped (and logged) as any unreadable packet."""
    json = BoundedJson

    def decode(self, encoded_packet):
        try:
            return super().decode(encoded_packet)
        except jsonin.TooDeep as exc:
            name = _EVENT_NAME.match(encoded_packet, encoded_packet.find("[")) \
                if isinstance(encoded_packet, str) and "[" in encoded_packet else None
            if self.packet_type != socketio.packet.EVENT or name is None:
                raise
            self.data = [json.loads(name.group(1)), exc]
            return 0


def create_socketio(app, db, settings) -> Hub:
    """Attach socket.io (path /socket.io/) to the aiohttp app; returns the hub."""
    # Short pings: a phone that drops off the network is released within ~20 s, not ~45 s.
    kwargs: dict[str, Any] = {"async_mode": "aiohttp", "max_http_buffer_size": MAX_MESSAGE_BYTES,
                              "ping_interval": 10, "ping_timeout": 10,
                              # Engine.IO's packets too: `json` is what engineio parses its own with.
                              "serializer": BoundedPacket, "json": BoundedJson}
    holder: dict[str, Hub] = {}
    if settings.redis_url:
        kwargs["client_manager"] = socketio.AsyncRedisManager(settings.redis_url,
                                                              channel=settings.redis_prefix + "socketio")

        # A page served by one node opens the socket of the node hosting its room; join tokens,
        # not cookies, authenticate, but only this deployment's origins are let in.
        def allowed(origin, environ=None):
            environ = environ or {}
            own = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
            return origin is None or origin == own or holder["hub"].cluster.allowed_origin(origin)

        kwargs["cors_allowed_origins"] = allowed
    # Without Redis, cors_allowed_origins stays at its default: same origin only.
    sio = socketio.AsyncServer(**kwargs)
    sio.attach(app, socketio_path="socket.io")
    hub = holder["hub"] = Hub(sio, db, settings)

    async def startup(_app):
        await hub.cluster.start()
        hub.start_watching()

    async def shutdown(_app):
        await hub.close()

    app.on_startup.append(startup)
    app.on_shutdown.append(shutdown)
    agreement_events.install(hub)
    procedure_events.install(hub)
    room_tools.install(hub)
    evidence_events.install(hub)
    screen_share.install(hub)
    return hub
