"""/healthz and /readyz on a real app: liveness, readiness against a real PostgreSQL behind a TCP
hop the test can cut or stall, and the shutdown flag."""
from __future__ import annotations

import asyncio

from server.http.app import create_app
from server.infra.db import Database


async def test_healthz_and_readyz_answer_without_session_work(client):
    node = client.app["settings"].node_id
    r = await client.get("/healthz")
    assert r.status == 200 and await r.json() == {"status": "ok", "node": node}
    # The session/CSRF middleware is skipped: no cookie handed out (a page gets one).
    assert "Set-Cookie" not in r.headers and r.headers["Cache-Control"] == "no-store"
    r = await client.get("/readyz")
    body = await r.json()
    assert r.status == 200, body
    assert body["status"] == "ok" and body["node"] == node
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["cluster"]["ok"] is True  # hub.cluster.check(): one node, no Redis
    assert "Set-Cookie" not in r.headers
    r = await client.get("/metrics")
    assert r.status == 200 and "Set-Cookie" not in r.headers
    # A write to a probe is not a CSRF failure (403): the router answers it.
    assert (await client.post("/readyz")).status == 405
    assert "mediation_csrf" in (await client.get("/")).cookies


async def test_readyz_is_503_once_shutdown_begins(client):
    assert (await client.get("/readyz")).status == 200
    await client.app.shutdown()  # what aiohttp runs first on SIGTERM (on_shutdown)
    r = await client.get("/readyz")
    assert r.status == 503
    assert (await r.json())["status"] == "shutting_down"
    assert (await client.get("/healthz")).status == 200  # still alive, just not taking work


class TcpHop:
    """A real TCP forwarder in front of PostgreSQL: `cut()` closes the port and every
    connection; `stall()` accepts connections but never answers (a hung database)."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self.stalled = False
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self, *, stalled: bool = False) -> None:
        self.stalled = stalled
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for w in self.writers:
            w.close()
        self.writers.clear()
        await asyncio.sleep(0.05)

    async def stall(self) -> None:
        await self.cut()
        await self.start(stalled=True)

    async def _handle(self, reader, writer) -> None:
        self.writers.append(writer)
        if self.stalled:
            await reader.read()  # until cut
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers.append(up_writer)

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_readyz_follows_the_database(aiohttp_client, settings, pg_database):
    from sqlalchemy.engine import make_url
    target = make_url(pg_database)
    hop = TcpHop(target.host or "127.0.0.1", target.port or 5432)
    await hop.start()
    db = Database(target.set(host="127.0.0.1", port=hop.port).render_as_string(hide_password=False))
    client = None
    try:
        client = await aiohttp_client(create_app(settings, db=db))
        client.app["health"].db_timeout = 0.5  # keeps the stalled case short

        async def ready():
            r = await client.get("/readyz")
            return r.status, (await r.json())["checks"]["database"]

        status, check = await ready()
        assert status == 200 and check["ok"], check

        await hop.cut()  # the port is closed: connections are refused
        status, check = await ready()
        assert status == 503 and not check["ok"] and check["error"], check
        assert (await client.get("/healthz")).status == 200

        await hop.stall()  # connections are accepted and never answered
        status, check = await ready()
        assert status == 503 and check["error"] == "no answer within 0.5 s", check

        await hop.cut()
        await hop.start()  # the database is back
        status, check = await ready()
        assert status == 200 and check["ok"], check
    finally:
        if client is not None:
            await client.close()
        await hop.cut()
        await db.dispose()
