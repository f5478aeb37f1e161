"""The link emulator against its settings, measured with real sockets in the lab's namespaces."""
from __future__ import annotations

import asyncio
import socket
import statistics
import time

from tests.support import netlab
from tests.support.netlab import inside


def _udp(ns, addr: str, port: int = 0) -> socket.socket:
    with inside(ns.name):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    s.setblocking(False)
    return s


def _tcp(ns) -> socket.socket:
    with inside(ns.name):
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


async def _echo(sock: socket.socket, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            data, addr = await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), 0.2)
        except asyncio.TimeoutError:
            continue
        sock.sendto(data, addr)


async def _rtts(client: socket.socket, server_addr: tuple, n: int) -> list[float]:
    loop = asyncio.get_running_loop()
    out = []
    for i in range(n):
        t0 = time.monotonic()
        client.sendto(i.to_bytes(4, "big"), server_addr)
        await asyncio.wait_for(loop.sock_recvfrom(client, 2048), 5)
        out.append(time.monotonic() - t0)
    return out


async def test_delay_is_applied_each_way(lab):
    p, link = lab.participant()
    link.set(up={"delay": 0.05}, down={"delay": 0.15})
    server = _udp(lab.server, link.server_addr, 9000)
    client = _udp(p, link.participant_addr)
    stop = asyncio.Event()
    echo = asyncio.ensure_future(_echo(server, stop))
    try:
        rtts = await _rtts(client, (link.server_addr, 9000), 15)
    finally:
        stop.set()
        await echo
        server.close()
        client.close()
    median = statistics.median(rtts)
    assert 0.195 <= median <= 0.25, rtts
    stats = link.stats()
    assert stats["up"]["delivered_packets"] >= 15 and stats["down"]["delivered_packets"] >= 15


async def test_random_loss_drops_its_share(lab):
    p, link = lab.participant()
    link.set(up={"loss": 0.1})
    server = _udp(lab.server, link.server_addr, 9001)
    client = _udp(p, link.participant_addr)
    loop = asyncio.get_running_loop()
    got = 0

    async def receive():
        nonlocal got
        while True:
            try:
                await asyncio.wait_for(loop.sock_recvfrom(server, 2048), 1.0)
                got += 1
            except asyncio.TimeoutError:
                return

    receiver = asyncio.ensure_future(receive())
    for i in range(2000):
        client.sendto(b"x" * 100, (link.server_addr, 9001))
        if i % 20 == 0:
            await asyncio.sleep(0.002)  # paced, so neither the device nor the socket overflows
    await receiver
    server.close()
    client.close()
    stats = link.stats()["up"]
    assert 1700 <= got <= 1900, got
    assert stats["dropped_loss"] == stats["offered_packets"] - stats["delivered_packets"]
    assert got == stats["delivered_packets"]


async def test_rate_limit_with_a_tail_drop_queue(lab):
    p, link = lab.participant()
    link.set(down={"rate": 1_000_000, "queue": 30_000})
    listener = _tcp(lab.server)
    listener.bind((link.server_addr, 9002))
    listener.listen()
    listener.setblocking(False)
    client = _tcp(p)
    client.setblocking(False)
    loop = asyncio.get_running_loop()
    total = 400_000  # bytes: 3.2 Mbit, about 3.2 s at 1 Mbit/s
    accepted = asyncio.ensure_future(loop.sock_accept(listener))
    await loop.sock_connect(client, (link.server_addr, 9002))
    conn, _ = await accepted
    conn.setblocking(False)

    async def send():
        await loop.sock_sendall(conn, b"y" * total)
        conn.close()

    sender = asyncio.ensure_future(send())
    t0 = time.monotonic()
    got = 0
    while got < total:
        chunk = await asyncio.wait_for(loop.sock_recv(client, 65536), 10)
        if not chunk:
            break
        got += len(chunk)
    took = time.monotonic() - t0
    await sender
    client.close()
    listener.close()
    rate = got * 8 / took
    assert got == total
    assert 0.8e6 <= rate <= 1.1e6, rate  # TCP's headers and slow start stay within this band
    assert link.stats()["down"]["dropped_queue"] > 0  # the queue really filled and dropped


async def test_an_outage_drops_everything_until_it_ends(lab):
    p, link = lab.participant()
    server = _udp(lab.server, link.server_addr, 9003)
    client = _udp(p, link.participant_addr)
    stop = asyncio.Event()
    echo = asyncio.ensure_future(_echo(server, stop))
    try:
        assert len(await _rtts(client, (link.server_addr, 9003), 3)) == 3
        link.outage(True)
        client.sendto(b"lost", (link.server_addr, 9003))
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.sock_recvfrom(client, 2048), 1.0)
            raise AssertionError("a packet crossed the link during the outage")
        except asyncio.TimeoutError:
            pass
        link.outage(False)
        assert len(await _rtts(client, (link.server_addr, 9003), 3)) == 3
    finally:
        stop.set()
        await echo
        server.close()
        client.close()
    assert link.stats()["up"]["dropped_down"] >= 1


async def test_firewall_blocks_udp_but_not_tcp(lab):
    p, link = lab.participant()
    p.block_udp()
    server = _udp(lab.server, link.server_addr, 9004)
    client = _udp(p, link.participant_addr)
    try:
        client.sendto(b"blocked", (link.server_addr, 9004))
    except PermissionError:
        pass  # the output chain refuses it at once, as a host firewall does
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.sock_recvfrom(server, 2048), 1.0)
        raise AssertionError("UDP went through the firewall")
    except asyncio.TimeoutError:
        pass
    finally:
        server.close()
        client.close()
    listener = _tcp(lab.server)
    listener.bind((link.server_addr, 9005))
    listener.listen()
    listener.setblocking(False)
    tcp = _tcp(p)
    tcp.setblocking(False)
    accepted = asyncio.ensure_future(loop.sock_accept(listener))
    await asyncio.wait_for(loop.sock_connect(tcp, (link.server_addr, 9005)), 5)
    conn, _ = await accepted
    conn.close()
    tcp.close()
    listener.close()


def test_the_lab_removes_what_it_made(tmp_path):
    lab = netlab.Lab(tmp_path / "lab")
    lab.participant()
    names = [ns.name for ns in lab.namespaces]
    assert all(n in netlab.leftovers() for n in names)
    lab.close()
    assert not any(n in netlab.leftovers() for n in names)
