"""Janus (Debian's `janus`, the C SFU) as a server for bench/forwarding.py: started with a
VideoRoom-only configuration (the videoroom plugin and the HTTP transport, nothing else) and
driven through its HTTP API with the same aiortc publisher and viewers as the rooms/ paths.

When `janus` is missing and the benchmark runs as root it is installed with apt. Janus 1.1.2
skips the loopback interface when it gathers ICE candidates; the aiortc peers here use the
machine's own address, which Janus gathers too, so no workaround is needed unless the machine
has nothing but `lo` (then `--janus-loopback` builds an LD_PRELOAD shim that clears IFF_LOOPBACK
for `lo` in getifaddrs() and enforces `lo`, as the issue describes).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from typing import Awaitable, Callable, Optional

import aiohttp

JANUS = "/usr/bin/janus"
LIBDIR = "/usr/lib/x86_64-linux-gnu/janus"
ROOM = 1234

_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <string.h>
int getifaddrs(struct ifaddrs **ifap) {
    static int (*real)(struct ifaddrs **) = 0;
    if (!real) real = dlsym(RTLD_NEXT, "getifaddrs");
    int rc = real(ifap);
    if (rc == 0)
        for (struct ifaddrs *i = *ifap; i; i = i->ifa_next)
            if (i->ifa_name && !strcmp(i->ifa_name, "lo")) i->ifa_flags &= ~IFF_LOOPBACK;
    return rc;
}
"""


def ensure_janus() -> bool:
    """Janus is there (installed now with apt when missing and we are root)."""
    if os.path.exists(JANUS):
        return True
    if os.geteuid() != 0:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-q", "janus"], env=env, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return os.path.exists(JANUS)


class JanusServer:
    """One Janus process with one VideoRoom room; the same calls as bench/forwarding.py's child
    server: join, publish (offer -> answer), answer (a viewer's answer), cpu, close."""

    def __init__(self, on_offer: Callable[[str, str], Awaitable[None]], port: int = 18088,
                 loopback: bool = False) -> None:
        self.on_offer = on_offer
        self.port = port
        self.loopback = loopback
        self.dir = tempfile.mkdtemp(prefix="bench-janus-")
        self.proc: Optional[subprocess.Popen] = None
        self.http: Optional[aiohttp.ClientSession] = None
        self.session: Optional[int] = None
        self.handles: dict[str, int] = {}
        self.events: dict[int, asyncio.Queue] = {}
        self.publisher_ids: dict[str, int] = {}
        self.sub_handles: dict[str, int] = {}
        self._poll: Optional[asyncio.Task] = None
        self._tx = itertools.count(1)

    # -- process ---------------------------------------------------------------------------

    def _configure(self) -> dict:
        for sub, names in (("plugins", ["libjanus_videoroom.so"]), ("transports", ["libjanus_http.so"]),
                           ("events", []), ("loggers", [])):
            os.makedirs(os.path.join(self.dir, sub))
            for name in names:
                os.symlink(os.path.join(LIBDIR, sub, name), os.path.join(self.dir, sub, name))
        nat = 'nat: { ice_enforce_list = "lo" }\n' if self.loopback else "nat: { }\n"
        files = {
            "janus.jcfg": (
                "general: {\n"
                f'  configs_folder = "{self.dir}"\n  plugins_folder = "{self.dir}/plugins"\n'
                f'  transports_folder = "{self.dir}/transports"\n  events_folder = "{self.dir}/events"\n'
                f'  loggers_folder = "{self.dir}/loggers"\n  debug_level = 2\n  session_timeout = 120\n'
                "}\n"
                'media: { rtp_port_range = "40000-49999" }\n' + nat
            ),
            "janus.transport.http.jcfg": (
                "general: {\n  json = \"compact\"\n  base_path = \"/janus\"\n  http = true\n"
                f"  port = {self.port}\n  ip = \"127.0.0.1\"\n  https = false\n}}\n"
                "admin: { admin_http = false }\n"
            ),
            "janus.plugin.videoroom.jcfg": (
                "general: { }\n"
                f"room-{ROOM}: {{\n  description = \"bench\"\n  publishers = 32\n  bitrate = 0\n"
                "  fir_freq = 0\n  audiocodec = \"opus\"\n  videocodec = \"vp8\"\n  record = false\n}\n"
            ),
        }
        for name, text in files.items():
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(text)
        env = dict(os.environ)
        if self.loopback:
            src = os.path.join(self.dir, "noloopback.c")
            with open(src, "w") as f:
                f.write(_SHIM)
            lib = os.path.join(self.dir, "noloopback.so")
            subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", lib, src, "-ldl"], check=True)
            env["LD_PRELOAD"] = lib
        return env

    async def start(self) -> None:
        env = self._configure()
        self.proc = subprocess.Popen(
            [JANUS, "-C", os.path.join(self.dir, "janus.jcfg"), "-F", self.dir, "-N", "-o",
             "-L", os.path.join(self.dir, "janus.log")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.http = aiohttp.ClientSession()
        deadline = time.monotonic() + 15
        while True:
            try:
                reply = await self._post("", {"janus": "create"})
                self.session = reply["data"]["id"]
                break
            except (aiohttp.ClientError, OSError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"Janus did not start (log: {self.dir}/janus.log)")
                await asyncio.sleep(0.2)
        self._poll = asyncio.ensure_future(self._long_poll())

    async def cpu(self) -> float:
        return self.cpu_seconds()

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:  # type: ignore[union-attr]
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    # -- HTTP API --------------------------------------------------------------------------

    async def _post(self, path: str, body: dict) -> dict:
        body = {**body, "transaction": f"t{next(self._tx)}"}
        async with self.http.post(f"http://127.0.0.1:{self.port}/janus{path}", json=body,  # type: ignore[union-attr]
                                  timeout=aiohttp.ClientTimeout(total=15)) as r:
            reply = await r.json(content_type=None)
        if reply.get("janus") == "error":
            raise RuntimeError(f"Janus: {reply}")
        return reply

    async def _long_poll(self) -> None:
        while True:
            try:
                async with self.http.get(f"http://127.0.0.1:{self.port}/janus/{self.session}?maxev=10",  # type: ignore[union-attr]
                                         timeout=aiohttp.ClientTimeout(total=40)) as r:
                    reply = await r.json(content_type=None)
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.1)
                continue
            for event in reply if isinstance(reply, list) else [reply]:
                sender = event.get("sender")
                if sender is not None:
                    self.events.setdefault(sender, asyncio.Queue()).put_nowait(event)

    async def _attach(self, pid: str) -> int:
        reply = await self._post(f"/{self.session}", {"janus": "attach", "plugin": "janus.plugin.videoroom"})
        handle = reply["data"]["id"]
        self.handles[pid] = handle
        self.events.setdefault(handle, asyncio.Queue())
        return handle

    async def _event(self, handle: int, want: str) -> dict:
        """The next plugin event of `handle` carrying `want` (e.g. a jsep), skipping others."""
        while True:
            event = await asyncio.wait_for(self.events[handle].get(), 20)
            if event.get("janus") == "event" and (want in event or want in event.get("plugindata", {}).get("data", {})):
                return event

    async def _message(self, handle: int, body: dict, jsep: Optional[dict] = None) -> None:
        message = {"janus": "message", "body": body}
        if jsep is not None:
            message["jsep"] = jsep
        await self._post(f"/{self.session}/{handle}", message)

    # -- what bench/forwarding.py calls ----------------------------------------------------

    async def join(self, pid: str, role: str) -> None:
        if role == "viewer":
            await self.subscribe(pid)
        else:
            await self._attach(pid)  # a publisher's handle ("both": it subscribes later)

    async def subscribe(self, pid: str) -> None:
        """A subscriber handle for `pid` taking every other publisher's feed (one connection)."""
        handle = await self._attach(f"{pid}/sub")
        self.sub_handles[pid] = handle
        feeds = [{"feed": feed} for who, feed in self.publisher_ids.items() if who != pid]
        await self._message(handle, {"request": "join", "ptype": "subscriber", "room": ROOM, "streams": feeds})
        event = await self._event(handle, "jsep")
        asyncio.ensure_future(self.on_offer(pid, event["jsep"]["sdp"]))

    async def publish(self, pid: str, sdp: str) -> str:
        handle = self.handles[pid]
        await self._message(handle, {"request": "joinandconfigure", "ptype": "publisher", "room": ROOM,
                                     "display": pid, "audio": True, "video": True},
                            {"type": "offer", "sdp": sdp})
        event = await self._event(handle, "jsep")
        self.publisher_ids[pid] = event["plugindata"]["data"].get("id")
        await self._post(f"/{self.session}/{handle}", {"janus": "trickle", "candidate": {"completed": True}})
        return event["jsep"]["sdp"]

    async def answer(self, pid: str, sdp: str) -> None:
        handle = self.sub_handles[pid]
        await self._message(handle, {"request": "start", "room": ROOM}, {"type": "answer", "sdp": sdp})
        await self._post(f"/{self.session}/{handle}", {"janus": "trickle", "candidate": {"completed": True}})

    async def close(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
        try:
            if self.session is not None:
                await self._post(f"/{self.session}", {"janus": "destroy"})
        except Exception:
            pass
        if self.http is not None:
            await self.http.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
