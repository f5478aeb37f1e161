"""ICE consent freshness on a long round trip (rooms/aiortc_hooks.py).

Two real aioice connections talk through a userspace UDP link on loopback that delays every
datagram by 300 ms each way (a 600 ms round trip, as on a bufferbloated mobile link or a
satellite hop). aioice alone gives up on each consent check after 0.5 s and closes the
connection after six misses although every answer arrives; with the hook a connection stays
up as long as answers come, and still ends when the link really goes silent.

The consent interval is shortened for the test (aioice's CONSENT_INTERVAL, which the hook
also reads): 0.5 s instead of 5 s, so "six misses" and "no answer for 6 × interval" take 3 s."""
from __future__ import annotations

import asyncio
import time

import pytest
from aioice import Candidate, Connection
from aioice import ice as aioice_ice

import rooms.aiortc_hooks  # noqa: F401 - installs the consent check under test


class DelayLink:
    """A two-port UDP relay on 127.0.0.1: what A sends to `a_port` reaches B after `delay`
    seconds, and what B sends to `b_port` reaches A. `down` drops everything."""

    def __init__(self, delay: float):
        self.delay = delay
        self.down = False
        self.a_addr: tuple | None = None   # A's real address, learnt from its first datagram
        self.b_addr: tuple | None = None
        self.sent = 0

    async def start(self, b_target: tuple) -> None:
        loop = asyncio.get_running_loop()
        self.b_target = b_target
        link = self

        class Side(asyncio.DatagramProtocol):
            def __init__(self, name):
                self.name = name

            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, addr):
                if link.down:
                    return
                if self.name == "a":
                    link.a_addr = addr
                    loop.call_later(link.delay, link._out_b, data)
                else:
                    loop.call_later(link.delay, link._out_a, data)

        self.a_transport, self.a_side = await loop.create_datagram_endpoint(lambda: Side("a"),
                                                                            local_addr=("127.0.0.1", 0))
        self.b_transport, self.b_side = await loop.create_datagram_endpoint(lambda: Side("b"),
                                                                            local_addr=("127.0.0.1", 0))

    @property
    def a_port(self) -> int:
        return self.a_transport.get_extra_info("sockname")[1]

    @property
    def b_port(self) -> int:
        return self.b_transport.get_extra_info("sockname")[1]

    def _out_b(self, data):
        if not self.down:
            self.sent += 1
            self.b_transport.sendto(data, self.b_target)

    def _out_a(self, data):
        if not self.down and self.a_addr is not None:
            self.sent += 1
            self.a_transport.sendto(data, self.a_addr)

    def close(self):
        self.a_transport.close()
        self.b_transport.close()


def _host(conn: Connection) -> Candidate:
    return next(c for c in conn.local_candidates if c.type == "host" and ":" not in c.host)


def _via(port: int, like: Candidate) -> Candidate:
    return Candidate(foundation="link", component=1, transport="udp", priority=like.priority,
                     host="127.0.0.1", port=port, type="host")


async def _pair_through(link: DelayLink) -> tuple[Connection, Connection]:
    a = Connection(ice_controlling=True, components=1, use_ipv6=False)
    b = Connection(ice_controlling=False, components=1, use_ipv6=False)
    await a.gather_candidates()
    await b.gather_candidates()
    b_host = _host(b)
    await link.start((b_host.host, b_host.port))
    a.remote_username, a.remote_password = b.local_username, b.local_password
    b.remote_username, b.remote_password = a.local_username, a.local_password
    # Each side knows the other only through the link.
    await a.add_remote_candidate(_via(link.a_port, b_host))
    await a.add_remote_candidate(None)
    await b.add_remote_candidate(_via(link.b_port, _host(a)))
    await b.add_remote_candidate(None)
    await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 30)
    return a, b


def _alive(conn: Connection) -> bool:
    return conn._query_consent_task is not None and not conn._query_consent_task.done()


@pytest.fixture
def short_consent(monkeypatch):
    monkeypatch.setattr(aioice_ice, "CONSENT_INTERVAL", 0.5)
    return 0.5 * aioice_ice.CONSENT_FAILURES


async def test_a_600_ms_round_trip_keeps_consent(short_consent):
    link = DelayLink(0.3)
    a, b = await _pair_through(link)
    try:
        # Well past the point where six unanswered-in-0.5-s checks closed the connection.
        await asyncio.sleep(short_consent * 2.5)
        assert _alive(a) and _alive(b)
        await a.send(b"still here")
        assert await asyncio.wait_for(b.recv(), 5) == b"still here"
        assert link.sent > 20  # consent checks and their answers really crossed the link
    finally:
        link.close()
        await a.close()
        await b.close()


async def test_consent_is_lost_when_the_link_goes_silent(short_consent):
    link = DelayLink(0.3)
    a, b = await _pair_through(link)
    try:
        link.down = True
        t0 = time.monotonic()
        while _alive(a) and time.monotonic() - t0 < short_consent * 4:
            await asyncio.sleep(0.1)
        took = time.monotonic() - t0
        assert not _alive(a), "consent must expire once nothing answers"
        assert took >= short_consent * 0.8  # not at the first missed check
    finally:
        link.close()
        await a.close()
        await b.close()
