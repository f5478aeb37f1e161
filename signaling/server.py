"""The socket.io server on the aiohttp app: the hub (signaling/hub.py) with the event modules
that extend it (agreement_events.py, procedure_events.py). Called by server/http/app.py."""
from __future__ import annotations

from typing import Any

import socketio

from signaling import agreement_events, procedure_events
from signaling.hub import Hub


def create_socketio(app, db, settings) -> Hub:
    """Attach socket.io (path /socket.io/) to the aiohttp app; returns the hub."""
    # Short pings: a phone that drops off the network is released within ~20 s, not ~45 s.
    kwargs: dict[str, Any] = {"async_mode": "aiohttp", "max_http_buffer_size": 512 * 1024,
                              "ping_interval": 10, "ping_timeout": 10}
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
    return hub
