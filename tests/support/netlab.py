"""A network lab for tests and benchmarks: every participant on a link of its own.

    participant ns P1 ──(emulated link 10.77.1.2 ⇄ 10.77.1.1)──┐
    participant ns P2 ──(emulated link 10.77.2.2 ⇄ 10.77.2.1)──┤ server ns S  (mediation serve, coturn)
                                                                 ┘
Each namespace is made here and removed here (also when a test fails); nothing routes to
any other address, so traffic stays inside this lab. The links are pairs of TUN devices
joined by `tests/support/linkemu.py` (delay, loss, rate with tail drop, outage, per
direction). The server runs inside S, so aiortc announces only lab addresses. The test
process, in the root namespace, reaches the server through a loopback forwarder
(`Lab.forward`), and a program runs inside a namespace through `ip netns exec` (for
Chromium, a small wrapper executable that Playwright launches).
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support.servers import ROOT

CLONE_NEWNET = 0x40000000
_labs = itertools.count(1)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


def available() -> str | None:
    """Why a lab cannot be built here, or None (root, iproute2, /dev/net/tun, nft)."""
    if os.geteuid() != 0:
        return "the network lab needs root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (./run.sh test installs iproute2 and nftables)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    return None


@contextlib.contextmanager
def inside(netns: str):
    """Switch this thread into a namespace for the block (sockets made there stay there)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns}")
        try:
            yield
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)


class Namespace:
    def __init__(self, lab: "Lab", name: str):
        self.lab, self.name = lab, name

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *cmd], capture_output=True, text=True,
                              check=check, timeout=timeout)

    def popen(self, cmd: list[str], **kw) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], **kw)
        self.lab._procs.append(proc)
        return proc

    def nft(self, ruleset: str) -> None:
        """Firewall rules inside this namespace (nftables syntax, the whole ruleset)."""
        subprocess.run(["ip", "netns", "exec", self.name, "nft", "-f", "-"], input=ruleset, text=True,
                       capture_output=True, check=True, timeout=20)

    def block_udp(self) -> None:
        """As a workplace firewall that blocks UDP: only TCP leaves or enters (DNS is not needed here)."""
        self.nft("table inet lab {\n"
                 "  chain out { type filter hook output priority 0; meta l4proto udp drop; }\n"
                 "  chain in { type filter hook input priority 0; meta l4proto udp drop; }\n"
                 "}\n")

    def only_tcp_443(self) -> None:
        """As a network that allows only HTTPS: TCP to port 443 (and its answers), nothing else."""
        self.nft("table inet lab {\n"
                 "  chain out { type filter hook output priority 0; policy drop;\n"
                 "    oif lo accept; tcp dport 443 accept; ct state established,related accept; }\n"
                 "  chain in { type filter hook input priority 0; policy drop;\n"
                 "    iif lo accept; ct state established,related accept; }\n"
                 "}\n")

    def wrapper(self, program: str) -> Path:
        """An executable that runs `program` inside this namespace (for Playwright's executable_path)."""
        path = self.lab.workdir / f"{self.name}-{Path(program).name}"
        path.write_text(f"#!/bin/sh\nexec ip netns exec {self.name} {program} \"$@\"\n")
        path.chmod(0o755)
        return path


class EmulatedLink:
    """The link between a participant namespace and the server namespace."""

    def __init__(self, lab: "Lab", participant: Namespace, server: Namespace, index: int):
        self.lab, self.participant, self.server, self.index = lab, participant, server, index
        self.participant_addr = f"10.77.{index}.2"
        self.server_addr = f"10.77.{index}.1"
        self.control = lab.workdir / f"link{index}.sock"
        self.tun_p, self.tun_s = f"lab{index}p", f"lab{index}s"
        cfg = {"ns_a": participant.name, "tun_a": self.tun_p, "ns_b": server.name, "tun_b": self.tun_s,
               "control": str(self.control), "seed": index}
        # Real-time priority, so host load does not become link delay (chrt is util-linux).
        prefix = ["chrt", "-f", "50"] if shutil.which("chrt") else []
        self.proc = subprocess.Popen([*prefix, sys.executable, "-m", "tests.support.linkemu", json.dumps(cfg)],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lab._procs.append(self.proc)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"link emulator did not start: {line}{self.proc.stderr.read()}")
        deadline = time.monotonic() + 10
        while not self.control.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("link emulator's control socket did not appear")
            time.sleep(0.02)
        for ns, dev, local, peer in ((participant, self.tun_p, self.participant_addr, self.server_addr),
                                     (server, self.tun_s, self.server_addr, self.participant_addr)):
            _ip("-n", ns.name, "addr", "add", local, "peer", peer, "dev", dev)
            _ip("-n", ns.name, "link", "set", dev, "mtu", "1400", "up")

    def _request(self, req: dict) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.control))
            s.sendall((json.dumps(req) + "\n").encode())
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        out = json.loads(buf)
        if not out.get("ok"):
            raise ValueError(out.get("error"))
        return out["stats"]

    def set(self, *, both: dict | None = None, up: dict | None = None, down: dict | None = None) -> None:
        """Conditions: delay (s, one way), loss (0..1), rate (bit/s), queue (bytes), down (bool).
        `up` is from the participant, `down` towards it, `both` each."""
        changes: dict = {"up": dict(both or {}), "down": dict(both or {})}
        changes["up"].update(up or {})
        changes["down"].update(down or {})
        self._request({"set": changes})

    def stats(self) -> dict:
        return self._request({"stats": True})

    def add_server_address(self) -> str:
        """One more address of the server namespace on this link (e.g. for coturn beside the web
        server, both on port 443); the participant reaches it over the same emulated link."""
        self._extra = getattr(self, "_extra", 2) + 1
        addr = f"10.77.{self.index}.{self._extra + 1}"
        _ip("-n", self.server.name, "addr", "add", f"{addr}/32", "dev", self.tun_s)
        _ip("-n", self.participant.name, "route", "add", addr, "dev", self.tun_p)
        return addr

    def change_address(self) -> str:
        """As a phone moving from Wi-Fi to mobile data: the participant's address goes away and
        another one comes (same link, same server address). Returns the new address."""
        self._moves = getattr(self, "_moves", 0) + 1
        old, new = self.participant_addr, f"10.77.{self.index}.{100 + self._moves}"
        _ip("-n", self.server.name, "route", "add", new, "dev", self.tun_s)
        _ip("-n", self.participant.name, "addr", "del", old, "peer", self.server_addr, "dev", self.tun_p)
        _ip("-n", self.participant.name, "addr", "add", new, "peer", self.server_addr, "dev", self.tun_p)
        self.participant_addr = new
        return new

    def outage(self, down: bool) -> None:
        self.set(both={"down": down})


class Lab:
    def __init__(self, workdir: Path):
        reason = available()
        if reason:
            raise RuntimeError(reason)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tag = f"ml{os.getpid() % 100000}x{next(_labs)}"
        self.namespaces: list[Namespace] = []
        self.links: list[EmulatedLink] = []
        self._procs: list[subprocess.Popen] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._loops: list = []
        self.server = self.namespace("s")

    def namespace(self, short: str) -> Namespace:
        ns = Namespace(self, f"{self.tag}{short}")
        _ip("netns", "add", ns.name)
        self.namespaces.append(ns)
        _ip("-n", ns.name, "link", "set", "lo", "up")
        # IPv4 only: no router solicitations or other IPv6 chatter on the links.
        ns.run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        return ns

    def participant(self) -> tuple[Namespace, EmulatedLink]:
        """A new participant namespace with its own emulated link to the server namespace."""
        index = len(self.links) + 1
        ns = self.namespace(f"p{index}")
        link = EmulatedLink(self, ns, self.server, index)
        self.links.append(link)
        return ns, link

    async def forward(self, ns: Namespace, host: str, port: int) -> int:
        """A loopback port in the root namespace whose connections are carried to host:port
        inside `ns` (the test process talks to the lab's server through it)."""

        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def handle(client_r, client_w):
            with inside(ns.name):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(sock, (host, port))
            except OSError:
                sock.close()
                client_w.close()
                return
            server_r, server_w = await asyncio.open_connection(sock=sock)
            await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self._servers.append(server)
        return server.sockets[0].getsockname()[1]

    def forward_in_thread(self, ns: Namespace, host: str, port: int) -> int:
        """`forward` for synchronous tests (Playwright's sync API): the forwarder runs on an event
        loop of its own in a background thread until the lab closes."""
        import threading
        loop = asyncio.new_event_loop()
        ready: "asyncio.Future[int]" = loop.create_future()

        def run():
            asyncio.set_event_loop(loop)

            async def start():
                ready.set_result(await self.forward(ns, host, port))

            loop.create_task(start())
            loop.run_forever()

        thread = threading.Thread(target=run, daemon=True, name=f"forward-{ns.name}")
        thread.start()
        self._loops.append((loop, thread))
        deadline = time.monotonic() + 5
        while not ready.done():
            if time.monotonic() > deadline:
                raise RuntimeError("the forwarder did not start")
            time.sleep(0.01)
        return ready.result()

    def close(self) -> None:
        for loop, thread in self._loops:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
        self._loops.clear()
        for server in self._servers:
            server.close()
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for ns in reversed(self.namespaces):
            _ip("netns", "del", ns.name, check=False)
        self.namespaces.clear()


def leftovers() -> list[str]:
    """Lab namespaces still present (a fixture that cleaned up leaves none of its own)."""
    out = _ip("netns", "list", check=False).stdout.split()
    return [n for n in out if n.startswith("ml")]
