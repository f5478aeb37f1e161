"""A userspace link emulator: two TUN devices, in two network namespaces, joined by this process.

This machine's kernel has no `netem` qdisc, so delay (and with it, realistic loss and rate
queues) is applied here: every IP packet read from one TUN device is written to the other
after the link's conditions for that direction:

- `loss`: the share of packets dropped at random (0..1);
- `rate`: a bottleneck in bit/s (0 = unlimited) with a tail-drop queue of `queue` bytes: a
  packet leaves when the ones before it have been serialized at that rate;
- `delay`: a fixed one-way delay in seconds, added after the queue;
- `down`: an outage, every packet dropped.

Each direction (`up`: from the participant, `down`: towards it) has its own settings and
counters (packets and bytes offered, delivered, dropped). Run as a process (`python -m
tests.support.linkemu CONFIG_JSON`, at real-time priority under `chrt` so host load does not
become link delay); it is controlled through a UNIX socket with one JSON request per line:
`{"set": {"up": {...}, "down": {...}}}`, `{"stats": true}`, `{"stop": true}`.
"""
from __future__ import annotations

import asyncio
import fcntl
import heapq
import json
import os
import random
import struct
import sys
import time
from dataclasses import asdict, dataclass, field

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MTU = 1500


def open_tun_in(netns: str, name: str) -> int:
    """Create TUN device `name` inside network namespace `netns`; returns its file descriptor
    (which stays bound to that namespace)."""
    from tests.support.netlab import inside
    with inside(netns):
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


@dataclass
class Conditions:
    delay: float = 0.0
    loss: float = 0.0
    rate: float = 0.0          # bit/s, 0 = unlimited
    queue: int = 64 * 1024     # bytes the bottleneck may hold before it drops
    down: bool = False


@dataclass
class Counters:
    offered_packets: int = 0
    offered_bytes: int = 0
    delivered_packets: int = 0
    delivered_bytes: int = 0
    dropped_loss: int = 0
    dropped_queue: int = 0
    dropped_down: int = 0


@dataclass
class Direction:
    cond: Conditions = field(default_factory=Conditions)
    stats: Counters = field(default_factory=Counters)
    busy_until: float = 0.0    # when the bottleneck has serialized what it holds
    queued: int = 0            # bytes waiting in the bottleneck


class Link:
    def __init__(self, fd_a: int, fd_b: int, seed: int | None = None):
        self.fds = {"up": (fd_a, fd_b), "down": (fd_b, fd_a)}  # up: A (participant) -> B (server side)
        self.dirs = {"up": Direction(), "down": Direction()}
        self.rng = random.Random(seed)
        self._heap: list[tuple[float, int, str, bytes, int]] = []
        self._seq = 0
        self._wake = asyncio.Event()

    def set(self, changes: dict) -> None:
        for name, values in changes.items():
            d = self.dirs[name]
            for k, v in values.items():
                if not hasattr(d.cond, k):
                    raise ValueError(f"unknown condition {k!r}")
                setattr(d.cond, k, type(getattr(d.cond, k))(v))

    def snapshot(self) -> dict:
        return {name: {"conditions": asdict(d.cond), **asdict(d.stats)} for name, d in self.dirs.items()}

    def _readable(self, name: str) -> None:
        src, _ = self.fds[name]
        d = self.dirs[name]
        now = time.monotonic()
        for _ in range(64):  # a burst at a time, then let the loop breathe
            try:
                pkt = os.read(src, MTU + 64)
            except BlockingIOError:
                return
            d.stats.offered_packets += 1
            d.stats.offered_bytes += len(pkt)
            c = d.cond
            if c.down:
                d.stats.dropped_down += 1
                continue
            if c.loss and self.rng.random() < c.loss:
                d.stats.dropped_loss += 1
                continue
            leave = now
            if c.rate > 0:
                if d.busy_until < now:
                    d.busy_until, d.queued = now, 0
                if d.queued + len(pkt) > c.queue:
                    d.stats.dropped_queue += 1
                    continue
                d.busy_until += len(pkt) * 8 / c.rate
                d.queued += len(pkt)
                leave = d.busy_until
            self._seq += 1
            heapq.heappush(self._heap, (leave + c.delay, self._seq, name, pkt, len(pkt) if c.rate > 0 else 0))
            self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for name in ("up", "down"):
            loop.add_reader(self.fds[name][0], self._readable, name)
        while True:
            if not self._heap:
                self._wake.clear()
                await self._wake.wait()
                continue
            due = self._heap[0][0]
            wait = due - time.monotonic()
            if wait > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except asyncio.TimeoutError:
                    pass
                continue
            _, _, name, pkt, queued = heapq.heappop(self._heap)
            d = self.dirs[name]
            d.queued = max(0, d.queued - queued)
            if d.cond.down:  # an outage also loses what was on the wire
                d.stats.dropped_down += 1
                continue
            try:
                os.write(self.fds[name][1], pkt)
                d.stats.delivered_packets += 1
                d.stats.delivered_bytes += len(pkt)
            except OSError:
                d.stats.dropped_down += 1


async def _serve(cfg: dict) -> None:
    fd_a = open_tun_in(cfg["ns_a"], cfg["tun_a"])
    fd_b = open_tun_in(cfg["ns_b"], cfg["tun_b"])
    print("ready", flush=True)
    link = Link(fd_a, fd_b, cfg.get("seed"))
    if cfg.get("conditions"):
        link.set(cfg["conditions"])
    runner = asyncio.ensure_future(link.run())
    stop = asyncio.Event()

    async def control(reader, writer):
        try:
            while line := await reader.readline():
                try:
                    req = json.loads(line)
                    if "set" in req:
                        link.set(req["set"])
                    if req.get("stop"):
                        stop.set()
                    out = {"ok": True, "stats": link.snapshot()}
                except (ValueError, KeyError, TypeError) as exc:
                    out = {"ok": False, "error": str(exc)}
                writer.write((json.dumps(out) + "\n").encode())
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_unix_server(control, path=cfg["control"])
    try:
        await stop.wait()
    finally:
        server.close()
        runner.cancel()
        os.close(fd_a)
        os.close(fd_b)


if __name__ == "__main__":
    asyncio.run(_serve(json.loads(sys.argv[1])))
