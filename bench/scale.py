"""Scale-out: many socket.io clients on one node vs two, and forwarded streams per node until full.

Everything runs on this machine, on loopback: real server processes (`python -m server.cli serve`,
as tests/cluster/conftest.py starts them) sharing a fresh PostgreSQL database and a Redis key
prefix of this run's own; clients in worker processes (multiprocessing, spawn).

Part 1, signaling (no media): R rooms x S participants (1 mediator, parties, observers; every
session, case and invite link is seeded into the database before the clock starts). All clients
connect first (untimed, spread over 10 s); then rooms arrive at a fixed rate: the mediator joins, then the others
join at once, answering the procedure steps they owe (parties: online consent + three notices,
observers: one notice) and following `redirect` refusals to the room's node as
tests/signaling/peer.Peer.join does; the mediator admits each one from the lobby. Then each
mediator toggles its own audio mute (`media.mute`) several times and every other client of the
room timestamps the `room.state` that shows the change (fan-out). Run once on one node (the
baseline) and once on two, the clients connecting to the nodes alternately, with the same
sessions shape and arrival rate.

Part 2, media: two nodes with NODE_MAX_STREAMS set low; rooms of a mediator and two parties,
each publishing pre-encoded VP8 + Opus and subscribing to the other two (12 forwarded streams
a room), are added one at a time until a new room is refused with `capacity`. After each room
the node each one was placed on, and rooms / streams / CPU per node (the Redis heartbeat and
/metrics) are printed. Receiving clients count frames with rooms' receiver tap (as
bench/forwarding.py does) instead of decoding, so the clients stay cheap.

    python bench/scale.py [--rooms 100] [--size 10] [--room-rate 2.5] [--max-streams 48] [--no-write]
    .venv/bin/python -m bench.scale  (the same)
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import multiprocessing
import os
import platform
import re
import resource
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.servers import ServerProcess, free_port as _free_port  # noqa: E402

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
SECRET = "scale-bench-secret-" + "k" * 32
HEADING = "## Scale-out"
PARTIES = 4          # parties per case (applicant + 3 respondents); a signaling room uses all of them
MEDIA_ROOM_STREAMS = 12  # 3 participants, each subscribing to the other two's audio + video


# ============================================================================ small helpers


def _cpu_self() -> float:
    """CPU seconds of this process (all threads: aiortc/aioice work is in here too)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    total = sum(fields[:8])
    return (total - idle) / hz, total / hz


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def fmt_ms(v: float) -> str:
    if v != v:  # nan
        return "–"
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def ratio(a: float, b: float) -> str:
    if a != a or b != b or a == 0:
        return "–"
    return f"{b / a:.2f}×"


def metrics_of(url: str) -> dict[str, float]:
    """The node's /metrics as {series: value} (labels dropped except sink/kind, kept in the name)."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        for key in ("sink", "kind", "area", "le"):
            lm = re.search(key + r'="([^"]*)"', labels)
            if lm:
                name += f"[{lm.group(1)}]"
        try:
            out[name] = float(value)
        except ValueError:
            pass
    return out


# ============================================================================ database and Redis


async def _create_database(name: str) -> str:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from server.infra.db import upgrade
    eng = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with eng.connect() as c:
            await c.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await eng.dispose()
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    await upgrade(url)
    return url


async def _drop_database(name: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    eng = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with eng.connect() as c:
            await c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await eng.dispose()


async def _seed(url: str, shapes: list[tuple[int, int]], evidence_dir: Path) -> list[dict]:
    """One case (applicant + 3 respondents), one open session and its invite links per shape
    (parties, observers), through the services as tests/cluster/conftest.py does. Returns per
    session {room_id, members: [{role, token}]}, mediator first."""
    from server.core import security
    from server.infra.db import Database
    from server.core.models import User
    from server.core.policy import Actor
    from server.core.schemas import AssignIn, CaseIn, InviteIn, SessionIn
    from server.services import cases as case_svc
    from server.services import sessions as session_svc
    from server.infra.files import FileStore
    from tests.api.helpers import case_body, seed

    # The applicant's access code (argon2, ~0.1 s of CPU on purpose) is never used here: hash one
    # and give every case that hash, which halves the seeding time. Only in this process.
    access_hash = await security.hash_secret_async(security.new_access_code())

    async def same_hash(_code: str) -> str:
        return access_hash

    db = Database(url)
    real_hash, case_svc.hash_secret_async = case_svc.hash_secret_async, same_hash
    try:
        w = await seed(db)
        async with db.session() as s:
            admin = Actor(user=await s.get(User, w.users["admin"]))
            mediator = Actor(user=await s.get(User, w.users["mediator"]))
        store = FileStore(evidence_dir)
        respondents = [{"name": f"被申请人{i}", "phone": f"1390000{i:04d}"} for i in range(1, PARTIES)]
        gate = asyncio.Semaphore(2)

        async def one(i: int, parties: int, observers: int) -> dict:
            async with gate:
                async with db.session() as s:
                    case, _ = await case_svc.file_case(
                        s, store, CaseIn.model_validate(case_body(w.inst_a, title=f"压测案件 {i}",
                                                                  respondents=respondents)),
                        [], max_bytes=1, max_files=0)
                    party_ids = [p.id for p in case.parties]
                    await case_svc.accept(s, admin, case.id)
                    await case_svc.assign(s, admin, case.id, AssignIn(mediator_id=w.users["mediator"]))
                    sess = await session_svc.open_session(s, mediator, case.id, SessionIn())
                    bodies = [InviteIn(role="mediator")]
                    bodies += [InviteIn(role="party", party_id=pid) for pid in party_ids[:parties]]
                    bodies += [InviteIn(role="observer", name=f"旁听{j}") for j in range(observers)]
                    members = []
                    for body in bodies:
                        _, token = await session_svc.create_invite(s, mediator, sess.id, body, secret=SECRET,
                                                                   default_seconds=6 * 3600)
                        members.append({"role": body.role, "token": token})
                return {"room_id": sess.room_id, "session_id": sess.id, "members": members}

        return list(await asyncio.gather(*(one(i, p, o) for i, (p, o) in enumerate(shapes))))
    finally:
        case_svc.hash_secret_async = real_hash
        await db.dispose()


def pg_transactions(db_name: str) -> int:
    """Transactions committed + rolled back in the database so far (pg_stat_database)."""
    import asyncpg

    async def read() -> int:
        c = await asyncpg.connect(PG_ADMIN_URL.replace("+asyncpg", ""))
        try:
            return int(await c.fetchval("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                                        "WHERE datname = $1", db_name))
        finally:
            await c.close()
    return asyncio.run(read())


def _redis_cleanup(prefix: str) -> int:
    import redis
    r = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(r.scan_iter(match=prefix + "*", count=1000))
        if keys:
            r.delete(*keys)
        return len(keys)
    finally:
        r.close()


def _heartbeats(prefix: str) -> dict[str, dict]:
    import redis
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        ids = sorted(r.smembers(prefix + "nodes"))
        out = {}
        for node_id, text in zip(ids, r.mget([f"{prefix}node:{i}" for i in ids]) if ids else []):
            if text:
                out[node_id] = json.loads(text)
        return out
    finally:
        r.close()


# ============================================================================ server nodes

# `python -m server.cli serve`, plus a garbage-collector callback that logs every collection
# longer than 20 ms (a pause of the whole process: the event loop, every socket). Costs nothing
# measurable; the server itself is unchanged.
NODE_LAUNCHER = """
import gc, runpy, sys, time
_start = [0.0]
def _gc(phase, info):
    if phase == "start":
        _start[0] = time.perf_counter()
        return
    ms = (time.perf_counter() - _start[0]) * 1000
    if ms >= 20:
        print(f"GCPAUSE {time.time():.3f} gen{info['generation']} {ms:.1f}", file=sys.stderr, flush=True)
gc.callbacks.append(_gc)
runpy.run_module("server.cli", run_name="__main__", alter_sys=True)
"""


class Node(ServerProcess):
    """A node of the benchmark's deployment: tests/support/servers.py's launcher, run through
    NODE_LAUNCHER so garbage-collection pauses are logged."""

    def __init__(self, node_id: str, port: int, data_dir: Path, env: dict):
        super().__init__(env, data_dir / "server.log", port=port, name=f"node {node_id}",
                         python_args=("-c", NODE_LAUNCHER))
        self.node_id, self.data_dir = node_id, data_dir

    def start(self) -> None:  # the benchmark starts every node first, then waits for each
        self.spawn()

    def gc_pauses(self, t_from: float, t_to: float) -> list[float]:
        """Garbage-collection pauses (ms) logged between two wall-clock times."""
        out = []
        for m in re.finditer(r"^GCPAUSE (\S+) gen(\d) (\S+)$", self.log(), re.M):
            if t_from <= float(m.group(1)) <= t_to:
                out.append(float(m.group(3)))
        return out

    def stop(self) -> None:
        super().stop(timeout=20)


def start_nodes(n: int, *, database_url: str, prefix: str, workdir: Path, tag: str, **env_extra) -> list[Node]:
    ports = [_free_port() for _ in range(n)]
    base = {k: v for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PUBLIC_URL", "RECORDINGS_DIR", "EVIDENCE_DIR",
                         "NODE_ID", "NODE_URL", "MEDIATION_DATA_DIR", "ICE_SERVERS", "MEDIA_ADDRESSES")}
    nodes = []
    for i, port in enumerate(ports):
        node_id = f"node-{chr(ord('a') + i)}"
        data_dir = workdir / f"{tag}-{node_id}"
        data_dir.mkdir(parents=True)
        env = dict(base, DATABASE_URL=database_url, REDIS_URL=REDIS_URL, REDIS_PREFIX=prefix, SECRET_KEY=SECRET,
                   NODE_ID=node_id, NODE_URL=f"http://127.0.0.1:{port}", PUBLIC_URL=f"http://127.0.0.1:{ports[0]}",
                   MEDIATION_DATA_DIR=str(data_dir), IDENTITY_CHECK="off", PYTHONUNBUFFERED="1",
                   **{k: str(v) for k, v in env_extra.items()})
        nodes.append(Node(node_id, port, data_dir, env))
    try:
        for node in nodes:  # one at a time: each applies (no) migrations at start
            node.start()
            node.wait_ready()
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


def wait_quiet(nodes: list[Node], timeout: float = 60) -> float:
    """Until no participant is left on any node and the nodes' CPU has gone idle (the
    disconnect handlers' audit writes done), so a stop does not cut into them. Returns seconds."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        mets = [metrics_of(n.url) for n in nodes]
        now = (time.monotonic(), sum(m.get("process_cpu_seconds_total", 0) for m in mets))
        busy = last is not None and (now[1] - last[1]) / (now[0] - last[0]) > 0.05
        if last is not None and not busy and all(m.get("mediation_participants", 1) == 0 for m in mets):
            break
        last = now
        time.sleep(0.5)
    return time.monotonic() - t0


def log_findings(nodes: list[Node]) -> list[str]:
    """WARNING/ERROR lines of the nodes' logs (and tracebacks), grouped by message shape."""
    counts: dict[str, int] = {}
    for node in nodes:
        for line in node.log().splitlines():
            if " WARNING " in line or " ERROR " in line or re.match(r"^\w+(\.\w+)*(Error|Exception): ", line):
                shape = re.sub(r"^\d{4}-\d\d-\d\d \S+ ", "", line)  # drop the timestamp
                shape = re.sub(r"\b[0-9a-f]{8,}\b", "<id>", shape)  # room ids, sids
                shape = re.sub(r"\b\d+(\.\d+)?\b", "<n>", shape)[:200]
                counts[f"{node.node_id}: {shape}"] = counts.get(f"{node.node_id}: {shape}", 0) + 1
    return [f"{n} × {shape}" for shape, n in sorted(counts.items(), key=lambda kv: -kv[1])]


# ============================================================================ part 1: signaling clients (worker side)


class SigClient:
    """A participant without media: python-socketio AsyncClient, following redirects and answering
    the procedure steps as tests.signaling.peer.Peer.join does, with timings."""

    def __init__(self, url: str, token: str, role: str):
        self.url, self.token, self.role = url, token, role
        self.sio = None
        self.me: dict | None = None
        self.node: str | None = None
        self.redirects = 0
        self.expect: tuple[str, bool, float, int] | None = None  # (mediator id, audio muted, sent at, round)
        self.fanout: list[float] = []
        self.fanout_rounds: list[int] = []
        self.errors: list[str] = []

    def _client(self):
        import socketio
        sio = socketio.AsyncClient(reconnection=False)
        sio.on("room.state", self._on_state)
        return sio

    async def _on_state(self, data=None) -> None:
        exp = self.expect
        if exp is None or not isinstance(data, dict):
            return
        for p in data.get("participants", []):
            if p.get("id") == exp[0]:
                if p.get("muted", {}).get("audio") is exp[1]:
                    self.fanout.append((time.monotonic() - exp[2]) * 1000)
                    self.fanout_rounds.append((exp[3], exp[2]))
                    self.expect = None
                return

    async def connect(self) -> None:
        self.sio = self._client()
        await self.sio.connect(self.url, socketio_path="socket.io", transports=["websocket"], wait_timeout=60)

    async def call(self, event: str, data: dict, timeout: float = 120) -> dict:
        return await self.sio.call(event, data, timeout=timeout)

    async def join(self) -> tuple[dict, float, float, int]:
        """(ack, ms from the first `join` to the ok ack, ms of the final `join` alone, round trips)."""
        t0 = time.monotonic()
        trips = 0
        last = float("nan")
        ack: dict = {}
        for _ in range(8):
            ts = time.monotonic()
            ack = await self.call("join", {"token": self.token})
            last = (time.monotonic() - ts) * 1000
            trips += 1
            code = None if ack.get("ok") else ack["error"]["code"]
            if code == "redirect":
                self.redirects += 1
                old, self.sio = self.sio, self._client()
                await old.disconnect()
                self.url = ack["error"]["node"]["url"]
                await self.sio.connect(self.url, socketio_path="socket.io", transports=["websocket"], wait_timeout=60)
            elif code == "consent_required":
                r = await self.call("consent.online", {"agree": True})
                trips += 1
                if not r.get("ok"):
                    return r, float("nan"), float("nan"), trips
            elif code == "notice_required":
                r = await self.call("notice.ack", {"notices": [n["id"] for n in ack["error"]["notices"]]})
                trips += 1
                if not r.get("ok"):
                    return r, float("nan"), float("nan"), trips
            else:
                break
        total = (time.monotonic() - t0) * 1000
        if ack.get("ok"):
            self.me = ack["participant"]
            self.node = (ack.get("node") or {}).get("id")
        return ack, total, last, trips

    async def close(self) -> None:
        try:
            if self.sio is not None and self.sio.connected:
                await self.sio.disconnect()
        except Exception:  # noqa: BLE001 - tearing down
            pass


async def _sig_worker_main(conn, cfg: dict) -> None:
    loop = asyncio.get_running_loop()

    async def recv() -> dict:
        return await loop.run_in_executor(None, conn.recv)

    rooms = [[SigClient(m["url"], m["token"], m["role"]) for m in room["members"]] for room in cfg["rooms"]]
    clients = [c for room in rooms for c in room]
    # ---- connect everyone (untimed), evenly over the connect window: each socket's engine.io
    # ping then comes at its own time, as with people arriving, not as one burst every 10 s
    connect_ms: list[float] = []
    connect_errors: list[str] = []
    start = time.monotonic() + 0.2
    spacing = cfg["connect_seconds"] / max(1, len(clients))

    async def connect(i: int, c: SigClient) -> None:
        await asyncio.sleep(max(0.0, start + i * spacing - time.monotonic()))
        t = time.monotonic()
        try:
            await c.connect()
            connect_ms.append((time.monotonic() - t) * 1000)
        except Exception as exc:  # noqa: BLE001 - counted
            connect_errors.append(repr(exc)[:200])

    t = time.monotonic()
    await asyncio.gather(*(connect(i, c) for i, c in enumerate(clients)))
    conn.send({"op": "connected", "cpu": _cpu_self(), "connect_ms": connect_ms, "errors": connect_errors,
               "seconds": time.monotonic() - t})

    # ---- joins: rooms arrive at the planned times; mediator first, then the rest at once
    msg = await recv()
    t0 = msg["t0"]
    joins: list[dict] = []
    admits: list[float] = []
    errors: list[str] = []

    async def participant(mediator: SigClient, c: SigClient) -> None:
        try:
            ack, total, last, trips = await c.join()
            if not ack.get("ok"):
                errors.append(f"{c.role} join: {ack.get('error', {}).get('code')}")
                return
            joins.append({"role": c.role, "total": total, "final": last, "trips": trips, "redirects": c.redirects,
                          "node": c.node, "done": time.monotonic()})
            if ack.get("in_lobby"):
                ts = time.monotonic()
                r = await mediator.call("lobby.admit", {"participant_id": c.me["id"]})
                if r.get("ok"):
                    admits.append((time.monotonic() - ts) * 1000)
                else:
                    errors.append(f"admit: {r.get('error', {}).get('code')}")
        except Exception as exc:  # noqa: BLE001 - counted
            errors.append(f"{c.role}: {exc!r}"[:200])

    async def room_arrives(offset: float, members: list[SigClient]) -> None:
        await asyncio.sleep(max(0.0, t0 + offset - time.monotonic()))
        mediator = members[0]
        if mediator.sio is None or not mediator.sio.connected:
            errors.append("mediator not connected")
            return
        try:
            ack, total, last, trips = await mediator.join()
        except Exception as exc:  # noqa: BLE001 - counted
            errors.append(f"mediator: {exc!r}"[:200])
            return
        if not ack.get("ok"):
            errors.append(f"mediator join: {ack.get('error', {}).get('code')}")
            return
        joins.append({"role": "mediator", "total": total, "final": last, "trips": trips,
                      "redirects": mediator.redirects, "node": mediator.node, "done": time.monotonic()})
        await asyncio.gather(*(participant(mediator, c) for c in members[1:] if c.sio is not None))

    await asyncio.gather(*(room_arrives(room["offset"], members) for room, members in zip(cfg["rooms"], rooms)))
    conn.send({"op": "joined", "cpu": _cpu_self(), "joins": joins, "admits": admits, "errors": errors})

    # ---- fan-out: each mediator toggles its audio mute; the others timestamp the room.state showing it
    msg = await recv()
    t1, rounds, period = msg["t1"], msg["rounds"], msg["period"]
    acks: list[float] = []
    fan_errors: list[str] = []
    expected = 0

    async def toggles(offset: float, members: list[SigClient]) -> None:
        nonlocal expected
        mediator = members[0]
        if mediator.me is None:
            return
        others = [c for c in members[1:] if c.me is not None]
        for k in range(rounds):
            await asyncio.sleep(max(0.0, t1 + k * period + offset - time.monotonic()))
            muted = k % 2 == 0
            sent = time.monotonic()
            for c in others:
                c.expect = (mediator.me["id"], muted, sent, k)
            expected += len(others)
            try:
                r = await mediator.call("media.mute", {"kind": "audio", "muted": muted}, timeout=60)
                if r.get("ok"):
                    acks.append((time.monotonic() - sent) * 1000)
                else:
                    fan_errors.append(f"mute: {r.get('error', {}).get('code')}")
            except Exception as exc:  # noqa: BLE001 - counted
                fan_errors.append(f"mute: {exc!r}"[:200])

    n = len(rooms)
    await asyncio.gather(*(toggles(room["fan_offset"], members) for room, members in zip(cfg["rooms"], rooms)))
    await asyncio.sleep(2.0)  # late deliveries
    fanout = [x for c in clients for x in c.fanout]
    rounds_of = [(k, sent, cfg.get("index", 0)) for c in clients for k, sent in c.fanout_rounds]
    conn.send({"op": "fanned", "cpu": _cpu_self(), "fanout": fanout, "fanout_rounds": rounds_of, "acks": acks, "expected": expected,
               "errors": fan_errors, "rooms": n})

    await recv()  # close
    await asyncio.gather(*(c.close() for c in clients))
    conn.send({"op": "closed", "cpu": _cpu_self()})


def _sig_worker(conn, cfg: dict) -> None:
    try:
        asyncio.run(_sig_worker_main(conn, cfg))
    except BaseException as exc:  # noqa: BLE001 - tell the parent, do not hang it
        import traceback
        conn.send({"op": "error", "error": repr(exc), "trace": traceback.format_exc()})


# ============================================================================ part 1: orchestration


class Workers:
    """Worker processes and their pipes; every call waits for one message from each."""

    def __init__(self, target, cfgs: list[dict]):
        ctx = multiprocessing.get_context("spawn")
        self.conns = []
        self.procs = []
        for cfg in cfgs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=target, args=(child, cfg), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def send_all(self, msg: dict) -> None:
        for c in self.conns:
            c.send(msg)

    def recv(self, i: int, timeout: float) -> dict:
        if not self.conns[i].poll(timeout):
            raise TimeoutError(f"worker {i} sent nothing within {timeout:.0f} s")
        msg = self.conns[i].recv()
        if msg.get("op") == "error":
            raise RuntimeError(f"worker {i} failed: {msg['error']}\n{msg.get('trace', '')}")
        return msg

    def recv_all(self, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        return [self.recv(i, max(1.0, deadline - time.monotonic())) for i in range(len(self.conns))]

    def close(self) -> None:
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(5)


class Meter:
    """CPU seconds of the nodes (their /metrics), of the client workers, and of the whole machine."""

    def __init__(self, nodes: list[Node]):
        self.nodes = nodes

    def read(self, client_cpu: float) -> dict:
        busy, total = _machine_cpu()
        mets = [metrics_of(n.url) for n in self.nodes]
        return {"t": time.monotonic(), "wall": time.time(), "nodes": [m.get("process_cpu_seconds_total", float("nan")) for m in mets],
                "metrics": mets, "clients": client_cpu, "busy": busy, "total": total}

    @staticmethod
    def lag(a: dict, b: dict) -> list[dict]:
        """Per node: event-loop lag samples (the node's 0.5 s watcher) between two readings."""
        out = []
        for x, y in zip(a["metrics"], b["metrics"]):
            def d(name: str) -> int:
                return int(y.get(name, 0) - x.get(name, 0))
            n = d("mediation_event_loop_lag_seconds_count")
            out.append({"samples": n,
                        "over_100ms": n - d("mediation_event_loop_lag_seconds_bucket[0.1]"),
                        "over_1s": n - d("mediation_event_loop_lag_seconds_bucket[1.0]")})
        return out

    @staticmethod
    def share(a: dict, b: dict) -> dict:
        wall = b["t"] - a["t"]
        cores = (b["total"] - a["total"]) / wall  # ≈ number of cores
        nodes = [(y - x) / wall for x, y in zip(a["nodes"], b["nodes"])]
        clients = (b["clients"] - a["clients"]) / wall
        busy = (b["busy"] - a["busy"]) / wall
        return {"wall": wall, "cores": cores, "nodes": nodes, "clients": clients, "busy": busy,
                "other": max(0.0, busy - sum(nodes) - clients)}


def run_signaling(n_nodes: int, sessions: list[dict], args, *, database_url: str, db_name: str, prefix: str,
                  workdir: Path) -> dict:
    tag = f"{n_nodes}n"
    phases: dict[str, float] = {}
    t_phase = time.monotonic()

    def phase(name: str) -> None:
        nonlocal t_phase
        now = time.monotonic()
        phases[name] = now - t_phase
        t_phase = now

    nodes = start_nodes(n_nodes, database_url=database_url, prefix=prefix, workdir=workdir, tag=tag,
                        NODE_HEARTBEAT=1.0, NODE_TTL=3.0, NODE_MAX_STREAMS=600, NODE_MAX_CPU=0.85)
    workers = None
    try:
        n_workers = args.workers
        cfgs = [{"rooms": [], "connect_seconds": args.connect_seconds, "index": i} for i in range(n_workers)]
        for r, sess in enumerate(sessions):
            members = [{"role": m["role"], "token": m["token"], "url": nodes[(r + j) % n_nodes].url}
                       for j, m in enumerate(sess["members"])]
            cfgs[r % n_workers]["rooms"].append({"offset": r / args.room_rate, "members": members,
                                                 "fan_offset": (r / len(sessions)) * args.period})
        meter = Meter(nodes)
        phase("start nodes")
        workers = Workers(_sig_worker, cfgs)
        connected = workers.recv_all(300)
        phase("connect")
        clients_cpu = sum(m["cpu"] for m in connected)
        connect_ms = [x for m in connected for x in m["connect_ms"]]
        connect_errors = [e for m in connected for e in m["errors"]]
        time.sleep(1.0)
        x0 = pg_transactions(db_name)
        m0 = meter.read(clients_cpu)
        t0 = time.monotonic() + 0.5
        workers.send_all({"op": "join", "t0": t0})
        joined = workers.recv_all(600)
        phase("join")
        joins = [j for m in joined for j in m["joins"]]
        end = max((j["done"] for j in joins), default=t0)
        m1 = meter.read(sum(m["cpu"] for m in joined))
        hb = _heartbeats(prefix)
        node_metrics = {n.node_id: metrics_of(n.url) for n in nodes}
        time.sleep(2.0)  # also lets PostgreSQL's statistics catch up
        x1 = pg_transactions(db_name)
        m2 = meter.read(sum(m["cpu"] for m in joined))
        t1 = time.monotonic() + 0.5
        workers.send_all({"op": "fanout", "t1": t1, "rounds": args.rounds, "period": args.period})
        phase("pause")
        fanned = workers.recv_all(300)
        phase("fan-out")
        m3 = meter.read(sum(m["cpu"] for m in fanned))
        workers.send_all({"op": "close"})
        workers.recv_all(120)
        wait_quiet(nodes)
        phase("disconnect")
    finally:
        if workers is not None:
            workers.close()
        for n in nodes:
            n.stop()
    phase("stop nodes")
    print("   phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()), flush=True)
    join_share = Meter.share(m0, m1)
    fan_share = Meter.share(m2, m3)
    return {
        "nodes": n_nodes,
        "clients": sum(len(s["members"]) for s in sessions),
        "connect_ms": connect_ms, "connect_errors": connect_errors,
        "joins": joins,
        "admits": [x for m in joined for x in m["admits"]],
        "join_errors": [e for m in joined for e in m["errors"]],
        "join_wall": end - t0,
        "fanout": [x for m in fanned for x in m["fanout"]],
        "fanout_rounds": [k for m in fanned for k in m["fanout_rounds"]],
        "fan_acks": [x for m in fanned for x in m["acks"]],
        "fan_expected": sum(m["expected"] for m in fanned),
        "fan_errors": [e for m in fanned for e in m["errors"]],
        "join_cpu": join_share, "fan_cpu": fan_share,
        "join_lag": Meter.lag(m0, m1), "fan_lag": Meter.lag(m2, m3),
        "join_gc": [n.gc_pauses(m0["wall"], m1["wall"]) for n in nodes],
        "fan_gc": [n.gc_pauses(m2["wall"], m3["wall"]) for n in nodes],
        "pg_xacts": x1 - x0,
        "heartbeat": hb,
        "metrics": {k: {x: v.get(x) for x in ("mediation_rooms", "mediation_participants")} for k, v in node_metrics.items()},
        "log": log_findings(nodes),
    }


# ============================================================================ part 2: media rooms (worker side)


async def _media_worker_main(conn, cfg: dict) -> None:
    from rooms import aiortc_hooks as hooks
    from tests.rooms.clients import Media, wait_for
    from tests.signaling.peer import Peer

    class TapPeer(Peer):
        """Peer whose subscribe side counts encoded frames (rooms' receiver tap) instead of decoding."""

        def _on_track(self, track) -> None:
            pass

        async def _answer(self, offer: dict) -> None:
            try:
                await self._answer_tapped(offer)
            except Exception:  # noqa: BLE001 - an offer that crossed our own close
                if not self.closing:
                    raise

        async def _answer_tapped(self, offer: dict) -> None:
            await self.sub.setRemoteDescription(__import__("aiortc").RTCSessionDescription(sdp=offer["sdp"],
                                                                                          type=offer["type"]))
            for t in self.sub.getTransceivers():
                if hooks.receiver_tap(t.receiver) is None:
                    hooks.install_receiver_tap(t.receiver, t.kind)
            for row in offer.get("tracks", []):
                self.tracks[row["mid"]] = row
            await self.sub.setLocalDescription(await self.sub.createAnswer())
            ack = await self.call("rtc.answer", {"sdp": self.sub.localDescription.sdp, "type": "answer"})
            self.events["answer_acks"].append(ack)

        def frames_from(self, publisher_id: str, kind: str = "video") -> int:
            total = 0
            for t in self.sub.getTransceivers():
                tap = hooks.receiver_tap(t.receiver)
                row = self.tracks.get(t.mid) or {}
                if tap is not None and t.kind == kind and row.get("participant_id") == publisher_id:
                    total += tap.frames
            return total

    loop = asyncio.get_running_loop()
    media = Media()
    peers: list = []
    conn.send({"op": "ready", "cpu": _cpu_self()})
    while True:
        msg = await loop.run_in_executor(None, conn.recv)
        if msg["op"] == "cpu":
            conn.send({"op": "cpu", "cpu": _cpu_self()})
        elif msg["op"] == "add":
            room = msg["room"]
            t = time.monotonic()
            members = [TapPeer(m["url"], m["token"], media) for m in room["members"]]
            mediator, parties = members[0], members[1:]
            peers.extend(members)
            ack = await mediator.join()
            if not ack.get("ok"):
                conn.send({"op": "refused", "error": ack.get("error"), "asked": room["members"][0]["url"]})
                continue
            for p in parties:
                a = await p.join()
                if not a.get("ok"):
                    raise RuntimeError(f"party join refused: {a}")
                if a["in_lobby"]:
                    r = await mediator.call("lobby.admit", {"participant_id": p.me["id"]})
                    if not r.get("ok"):
                        raise RuntimeError(f"admit refused: {r}")
            for p in members:
                r = await p.publish()
                if not r.get("ok"):
                    raise RuntimeError(f"publish refused: {r}")
            await wait_for(lambda: all(a.frames_from(b.me["id"]) > 10 and a.frames_from(b.me["id"], "audio") > 10
                                       for a in members for b in members if a is not b),
                           timeout=30, what="every participant receiving both others' audio and video")
            conn.send({"op": "added", "node": mediator.node["id"], "nodes": [p.node["id"] for p in members],
                       "redirects": sum(len(p.redirects) for p in members), "asked": room["members"][0]["url"],
                       "setup_s": time.monotonic() - t, "cpu": _cpu_self()})
        elif msg["op"] == "close":
            for p in peers:
                try:
                    await asyncio.wait_for(p.close(), 10)
                except Exception:  # noqa: BLE001 - tearing down
                    pass
            conn.send({"op": "closed", "cpu": _cpu_self()})
            return


def _media_worker(conn, cfg: dict) -> None:
    try:
        asyncio.run(_media_worker_main(conn, cfg))
    except BaseException as exc:  # noqa: BLE001 - tell the parent, do not hang it
        import traceback
        conn.send({"op": "error", "error": repr(exc), "trace": traceback.format_exc()})


def run_media(sessions: list[dict], args, *, database_url: str, prefix: str, workdir: Path) -> dict:
    nodes = start_nodes(2, database_url=database_url, prefix=prefix, workdir=workdir, tag="media",
                        NODE_HEARTBEAT=0.5, NODE_TTL=3.0, NODE_MAX_STREAMS=args.max_streams,
                        NODE_MAX_CPU=args.max_cpu)
    workers = None
    rows: list[dict] = []
    refused = None
    try:
        workers = Workers(_media_worker, [{} for _ in range(args.workers)])
        workers.recv_all(120)
        meter = Meter(nodes)

        def client_cpu() -> float:
            workers.send_all({"op": "cpu"})
            return sum(m["cpu"] for m in workers.recv_all(30))

        for r, sess in enumerate(sessions):
            # The mediator comes in through the first node (the public URL) every time, the
            # parties through either: where the room goes is the cluster's choice.
            members = [{"role": m["role"], "token": m["token"], "url": nodes[j % 2].url}
                       for j, m in enumerate(sess["members"])]
            w = r % args.workers
            workers.conns[w].send({"op": "add", "room": {"members": members}})
            msg = workers.recv(w, 120)
            if msg["op"] == "refused":
                refused = {"room": r + 1, "error": msg["error"],
                           "asked": next(n.node_id for n in nodes if n.url == msg["asked"]),
                           "heartbeat": _heartbeats(prefix)}
                break
            # Let the heartbeat catch up and the CPU settle, then measure a window.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                hb = _heartbeats(prefix)
                total = sum(h["streams"] for h in hb.values())
                if total >= MEDIA_ROOM_STREAMS * (r + 1):
                    break
                time.sleep(0.2)
            time.sleep(args.settle)
            a = meter.read(client_cpu())
            time.sleep(args.window)
            b = meter.read(client_cpu())
            frames = [(y.get("mediation_forwarded_frames_total", y.get("mediation_forwarded_frames", 0))
                       - x.get("mediation_forwarded_frames_total", x.get("mediation_forwarded_frames", 0)))
                      / (b["t"] - a["t"]) for x, y in zip(a["metrics"], b["metrics"])]
            hb = _heartbeats(prefix)
            mets = {n.node_id: metrics_of(n.url) for n in nodes}
            share = Meter.share(a, b)
            rows.append({"room": r + 1, "placed": msg["node"], "asked": next(n.node_id for n in nodes
                                                                            if n.url == msg["asked"]),
                         "redirects": msg["redirects"], "setup_s": msg["setup_s"],
                         "per_node": {n.node_id: {"rooms": int(mets[n.node_id].get("mediation_rooms", 0)),
                                                  "streams": hb.get(n.node_id, {}).get("streams"),
                                                  "viewers": int(mets[n.node_id].get("mediation_consumers[viewer]", 0)),
                                                  "hb_cpu": hb.get(n.node_id, {}).get("cpu"),
                                                  "full": hb.get(n.node_id, {}).get("full"),
                                                  "cpu": share["nodes"][i], "fps": frames[i]}
                                      for i, n in enumerate(nodes)},
                         "share": share})
            print_media_row(rows[-1], [n.node_id for n in nodes])
        workers.send_all({"op": "close"})
        workers.recv_all(120)
        wait_quiet(nodes)
    finally:
        if workers is not None:
            workers.close()
        for n in nodes:
            n.stop()
    return {"rows": rows, "refused": refused, "log": log_findings(nodes), "node_ids": [n.node_id for n in nodes]}


def print_media_row(row: dict, ids: list[str]) -> None:
    parts = []
    for i in ids:
        p = row["per_node"][i]
        parts.append(f"{i}: {p['rooms']} rooms {p['streams']} streams {p['fps']:.0f} frames/s cpu {100 * p['cpu']:.0f}%"
                     f"{' FULL' if p['full'] else ''}")
    s = row["share"]
    print(f"  room {row['room']:>2} → {row['placed']} (asked {row['asked']}, {row['redirects']} redirects, "
          f"up in {row['setup_s']:.1f} s) | " + " | ".join(parts)
          + f" | clients {100 * s['clients']:.0f}%, machine busy {100 * s['busy'] / s['cores']:.0f}%", flush=True)


# ============================================================================ tables


def signaling_table(one: dict, two: dict) -> str:
    def joins(res, role=None, key="total"):
        return [j[key] for j in res["joins"] if role is None or j["role"] == role]

    rows: list[tuple[str, str, str, str]] = []

    def trio(label: str, a: list[float], b: list[float], qs=(50, 95, 100)) -> None:
        for q in qs:
            name = {50: "p50", 95: "p95", 100: "max"}[q]
            va, vb = pct(a, q), pct(b, q)
            rows.append((f"{label}, {name} (ms)", fmt_ms(va), fmt_ms(vb), ratio(va, vb)))

    trio("join incl. steps + redirect, all", joins(one), joins(two))
    for role, plural in (("mediator", "mediators"), ("party", "parties"), ("observer", "observers")):
        a, b = joins(one, role), joins(two, role)
        rows.append((f"join incl. steps + redirect, {plural}, p50 / p95 (ms)",
                     f"{fmt_ms(pct(a, 50))} / {fmt_ms(pct(a, 95))}", f"{fmt_ms(pct(b, 50))} / {fmt_ms(pct(b, 95))}",
                     ratio(pct(a, 50), pct(b, 50))))
    trio("final `join` alone", joins(one, key="final"), joins(two, key="final"))
    trio("`lobby.admit` ack", one["admits"], two["admits"], qs=(50, 95))
    trio("`room.state` fan-out after `media.mute`", one["fanout"], two["fanout"])
    trio("`media.mute` ack", one["fan_acks"], two["fan_acks"], qs=(50, 95))

    def ok(res):
        return f"{len(res['joins'])}/{res['clients']}"
    rows.append(("clients joined", ok(one), ok(two), ""))
    rows.append(("join phase: first `join` to last ok (s)", f"{one['join_wall']:.1f}", f"{two['join_wall']:.1f}",
                 ratio(one["join_wall"], two["join_wall"])))
    def per_join(res):
        c = res["join_cpu"]
        return 1000 * sum(c["nodes"]) * c["wall"] / max(1, len(res["joins"]))
    rows.append(("node CPU per joined participant (ms, all nodes, whole join phase)", f"{per_join(one):.0f}",
                 f"{per_join(two):.0f}", ratio(per_join(one), per_join(two))))
    rows.append(("PostgreSQL transactions per joined participant", f"{one['pg_xacts'] / max(1, len(one['joins'])):.1f}",
                 f"{two['pg_xacts'] / max(1, len(two['joins'])):.1f}", ""))

    def lag(res, key):
        return " + ".join(f"{x['over_100ms']} ({x['over_1s']})" for x in res[key])
    rows.append(("node event-loop lag ≥ 100 ms (≥ 1 s), samples every 0.5 s: joins",
                 lag(one, "join_lag"), lag(two, "join_lag"), ""))
    rows.append(("… during fan-out", lag(one, "fan_lag"), lag(two, "fan_lag"), ""))

    def gc(res, key):
        return " + ".join(f"{sum(1 for x in p if x >= 100)} ({max(p, default=0):.0f} ms)" for p in res[key])
    rows.append(("node garbage-collection pauses ≥ 100 ms (longest): joins", gc(one, "join_gc"), gc(two, "join_gc"), ""))
    rows.append(("… during fan-out", gc(one, "fan_gc"), gc(two, "fan_gc"), ""))
    rows.append(("redirects followed", str(sum(j["redirects"] for j in one["joins"])),
                 str(sum(j["redirects"] for j in two["joins"])), ""))

    def fan_ok(res):
        return f"{len(res['fanout'])}/{res['fan_expected']}"
    rows.append(("`room.state` changes delivered", fan_ok(one), fan_ok(two), ""))
    rows.append(("errors (join / fan-out)", f"{len(one['join_errors'])} / {len(one['fan_errors'])}",
                 f"{len(two['join_errors'])} / {len(two['fan_errors'])}", ""))

    def cpu(res, key):
        s = res[key]
        nodes = " + ".join(f"{100 * x:.0f}" for x in s["nodes"])
        return (f"nodes {nodes}, clients {100 * s['clients']:.0f}, other {100 * s['other']:.0f} "
                f"(machine {100 * s['busy'] / s['cores']:.0f} % busy)")
    rows.append(("CPU during joins, % of one core", cpu(one, "join_cpu"), cpu(two, "join_cpu"), ""))
    rows.append(("CPU during fan-out, % of one core", cpu(one, "fan_cpu"), cpu(two, "fan_cpu"), ""))

    def placement(res):
        counts: dict[str, set] = {}
        for j in res["joins"]:
            if j["role"] == "mediator":
                counts.setdefault(j["node"], 0)
                counts[j["node"]] += 1
        return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    rows.append(("rooms per node", placement(one), placement(two), ""))

    out = ["| measure | 1 node (baseline) | 2 nodes | 2 nodes / 1 node |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(out)


def media_table(media: dict) -> str:
    ids = media["node_ids"]
    head = ("| rooms added | placed on (asked) | " + " | ".join(f"{i}: rooms / streams / frames/s out / CPU" for i in ids)
            + " | nodes CPU | clients CPU | other CPU | machine busy |")
    out = [head, "|" + "---|" * (6 + len(ids))]
    for row in media["rows"]:
        s = row["share"]
        cells = []
        for i in ids:
            p = row["per_node"][i]
            cells.append(f"{p['rooms']} / {p['streams']} / {p['fps']:.0f} / {100 * p['cpu']:.0f} %"
                         f"{' **full**' if p['full'] else ''}")
        out.append(f"| {row['room']} | {row['placed']} ({row['asked']}) | " + " | ".join(cells)
                   + f" | {100 * sum(s['nodes']):.0f} % | {100 * s['clients']:.0f} % | {100 * s['other']:.0f} % | "
                   f"{100 * s['busy'] / s['cores']:.0f} % of {s['cores']:.0f} cores |")
    ref = media["refused"]
    if ref:
        cells = []
        for i in ids:
            h = ref["heartbeat"].get(i, {})
            cells.append(f"heartbeat: {h.get('rooms')} / {h.get('streams')} / – / {100 * (h.get('cpu') or 0):.0f} %"
                         f"{' **full**' if h.get('full') else ''}")
        out.append(f"| {ref['room']} | refused: `{ref['error'].get('code')}` ({ref['asked']}) | "
                   + " | ".join(cells) + " | | | | |")
    return "\n".join(out)


def write_section(path: Path, section: str, heading: str = HEADING) -> None:
    """Replace a benchmark's own section (from its heading to the next `## `), keep the rest."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = text.find(heading)
    if start >= 0:
        end = text.find("\n## ", start + 1)
        rest = text[end + 1:] if end >= 0 else ""
        text = text[:start] + section.rstrip() + "\n" + ("\n" + rest if rest else "")
    else:
        text = text.rstrip() + "\n\n" + section.rstrip() + "\n"
    path.write_text(text, encoding="utf-8")


# ============================================================================ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rooms", type=int, default=100, help="signaling rooms (sessions) per run")
    ap.add_argument("--size", type=int, default=10, help="participants per room: 1 mediator, up to 4 parties, "
                                                         "the rest observers")
    ap.add_argument("--room-rate", type=float, default=2.5, help="rooms arriving per second in the join phase")
    ap.add_argument("--rounds", type=int, default=4, help="mute toggles per mediator in the fan-out phase")
    ap.add_argument("--period", type=float, default=2.0, help="seconds between one mediator's toggles; "
                                                              "the rooms' toggles are spread over it")
    ap.add_argument("--workers", type=int, default=2, help="client worker processes")
    ap.add_argument("--connect-seconds", type=float, default=10.0,
                    help="the clients connect evenly over this many seconds (the server pings every 10 s)")
    ap.add_argument("--max-streams", type=int, default=48, help="NODE_MAX_STREAMS of the media part's nodes")
    ap.add_argument("--max-cpu", type=float, default=0.85, help="NODE_MAX_CPU of the media part's nodes")
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--window", type=float, default=3.0, help="seconds of each CPU window in the media part")
    ap.add_argument("--skip-signaling", action="store_true")
    ap.add_argument("--skip-media", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    ap.add_argument("--keep-logs", metavar="DIR", help="copy the nodes' logs here before cleaning up")
    args = ap.parse_args()
    started = time.monotonic()
    a0 = _machine_cpu()
    time.sleep(2.0)
    a1 = _machine_cpu()
    idle_busy = 100 * (a1[0] - a0[0]) / max(1e-9, a1[1] - a0[1])
    print(f"machine busy before the run: {idle_busy:.0f} % (of all cores)", flush=True)
    parties = min(PARTIES, args.size - 1)
    observers = args.size - 1 - parties
    media_rooms = 2 * math.ceil(args.max_streams / MEDIA_ROOM_STREAMS) + 2
    n_sig = 0 if args.skip_signaling else 2 * args.rooms
    n_media = 0 if args.skip_media else media_rooms

    run_id = uuid.uuid4().hex[:10]
    db_name = f"mediation_bench_{run_id}"
    prefix = f"mediation-bench-{run_id}:"
    workdir = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    db_created = False
    one = two = media = None
    try:
        import redis
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        t = time.monotonic()
        database_url = asyncio.run(_create_database(db_name))
        db_created = True
        shapes = [(parties, observers)] * n_sig + [(2, 0)] * n_media
        sessions = asyncio.run(_seed(database_url, shapes, workdir / "evidence"))
        print(f"database {db_name}: migrated and seeded {len(sessions)} sessions, "
              f"{sum(len(s['members']) for s in sessions)} invite links in {time.monotonic() - t:.1f} s", flush=True)
        if not args.skip_signaling:
            for n_nodes in (1, 2):
                part = sessions[(n_nodes - 1) * args.rooms:n_nodes * args.rooms]
                t = time.monotonic()
                res = run_signaling(n_nodes, part, args, database_url=database_url, db_name=db_name,
                                    prefix=f"{prefix}{n_nodes}n:", workdir=workdir)
                print(f"{n_nodes} node(s): {len(res['joins'])}/{res['clients']} joined in {res['join_wall']:.1f} s, "
                      f"join p50 {fmt_ms(pct([j['total'] for j in res['joins']], 50))} ms, "
                      f"fan-out p50 {fmt_ms(pct(res['fanout'], 50))} ms "
                      f"({time.monotonic() - t:.0f} s in all)", flush=True)
                for e in sorted(set(res["join_errors"] + res["fan_errors"] + res["connect_errors"]))[:10]:
                    print("   error:", e)
                if n_nodes == 1:
                    one = res
                else:
                    two = res
        if not args.skip_media:
            print(f"media: two nodes, NODE_MAX_STREAMS={args.max_streams}, NODE_MAX_CPU={args.max_cpu}; adding "
                  f"rooms of 3 (12 forwarded streams each)", flush=True)
            media = run_media(sessions[n_sig:], args, database_url=database_url, prefix=f"{prefix}media:",
                              workdir=workdir)
            if media["refused"]:
                print(f"  room {media['refused']['room']}: refused with {media['refused']['error'].get('code')!r}")
    finally:
        if db_created:
            try:
                asyncio.run(_drop_database(db_name))
            except Exception as exc:  # noqa: BLE001 - say so, go on cleaning
                print(f"could not drop database {db_name}: {exc!r}", file=sys.stderr)
        try:
            _redis_cleanup(prefix)
        except Exception as exc:  # noqa: BLE001
            print(f"could not clean Redis keys {prefix}*: {exc!r}", file=sys.stderr)
        if args.keep_logs:
            keep = Path(args.keep_logs)
            keep.mkdir(parents=True, exist_ok=True)
            for log in workdir.glob("*/server.log"):
                shutil.copy(log, keep / f"{log.parent.name}.log")
        shutil.rmtree(workdir, ignore_errors=True)
    took = time.monotonic() - started

    print()
    sig_table = signaling_table(one, two) if one and two else ""
    med_table = media_table(media) if media else ""
    if sig_table:
        print(sig_table)
        print()
    if med_table:
        print(med_table)
        print()
    findings = []
    for label, res in (("1 node", one), ("2 nodes", two), ("media", media)):
        for line in (res or {}).get("log", [])[:8]:
            findings.append(f"{label}: {line}")
    if findings:
        print("server log warnings/errors:")
        print("\n".join("  " + f for f in findings))
    print(f"\ntook {took:.0f} s")
    if args.no_write or not (sig_table and med_table):
        return 0

    cores = os.cpu_count()
    from importlib.metadata import version
    section = f"""{HEADING}: {args.rooms * args.size:,} socket.io clients on one node vs two, streams per node until full (`bench/scale.py`)

What it measures, all on loopback on this machine ({dt.date.today().isoformat()}, {cores} cores,
{platform.python_implementation()} {platform.python_version()}, python-socketio {version("python-socketio")},
aiortc {version("aiortc")}, PostgreSQL + Redis local): real node processes
(`python -m server.cli serve`, as tests/cluster/conftest.py starts them) on a fresh PostgreSQL
database and a Redis prefix of the run's own; every case, session and invite link is seeded into
the database before the clock starts. Clients run in {args.workers} worker processes
(multiprocessing) beside the nodes, so nodes, clients, PostgreSQL and Redis share the same
{cores} cores: the CPU rows say who used what ("other" = PostgreSQL, Redis, the kernel, anything else
running). The machine was {idle_busy:.0f} % busy in the 2 s before the run.

**Signaling, no media.** {args.rooms} rooms × {args.size} participants = {args.rooms * args.size:,} concurrent
python-socketio clients (1 mediator, {parties} parties, {observers} observers a room). All connect first,
evenly over {args.connect_seconds:g} s (untimed; so the server's engine.io pings, every 10 s per socket, do not
come as one burst); then a room arrives every {1000 / args.room_rate:.0f} ms ({args.room_rate:g} rooms/s): its mediator
joins, then the other {args.size - 1} join at once. "Join" runs from the first `join` to the ok ack and includes
what each participant owes: following a `redirect` to the room's node (a new socket), then for
parties `consent.online` and `notice.ack` (3 notices), for observers `notice.ack` (1 notice), each
followed by `join` again (a party: 3 `join`s + 2 steps); "final `join` alone" is the round trip of the last one. The mediator admits each one
from the lobby (`lobby.admit`). Then every mediator toggles its audio mute {args.rounds} times, {args.period:g} s
apart (the rooms' toggles spread evenly over those {args.period:g} s, {args.rooms / args.period:g} changes/s): "fan-out"
is from sending `media.mute` to each of the other {args.size - 1} clients receiving the `room.state`
that shows it. Baseline: the same run on one node (cluster mode, same Redis, same arrival rate);
then two nodes, clients connecting to them alternately. Nodes: NODE_HEARTBEAT=1, NODE_TTL=3,
NODE_MAX_STREAMS=600, NODE_MAX_CPU=0.85, IDENTITY_CHECK=off. CPU shares are % of one core, over the
join phase and over the fan-out phase; "machine busy" is /proc/stat over all cores. After the
clients leave, the nodes are stopped once idle.

`python bench/scale.py --rooms {args.rooms} --size {args.size} --room-rate {args.room_rate:g} --rounds {args.rounds} --period {args.period:g} --max-streams {args.max_streams}`
(took {took:.0f} s in all)

{sig_table}

**Forwarded streams per node until full.** Two nodes with NODE_MAX_STREAMS={args.max_streams},
NODE_MAX_CPU={args.max_cpu:g}, NODE_HEARTBEAT=0.5. Rooms of a mediator and two parties are added one at a time;
each participant publishes pre-encoded VP8 160x120 (30 fps) + Opus through aiortc (as
tests/signaling/peer.Peer.publish does) and subscribes to the other two, so a room is
{MEDIA_ROOM_STREAMS} forwarded streams. The subscribers count encoded frames with rooms' receiver tap
(no decoding, as bench/forwarding.py does). The mediator of every room connects
through node-a, the first node ("asked"), the parties through node-a and node-b; the room goes where the
cluster places it. Streams and the full flag come from each node's
Redis heartbeat, rooms from /metrics, CPU (% of one core) from /metrics `process_cpu_seconds_total`
over a {args.window:g} s window once the room's media flows (CPU columns: % of one core; "other" = the
rest of the machine: PostgreSQL, Redis, kernel, anything else running).

{med_table}
"""
    section += "\n" + reading(one, two, media, args) + "\n"
    write_section(Path(args.out), section)
    print(f"wrote the section to {args.out}")
    return 0


def reading(one: dict, two: dict, media: dict, args) -> str:
    """Statements computed from this run's numbers, plus what holds whatever the numbers."""
    lines = ["Reading it (the figures are this run's):"]
    j1, j2 = pct([j["total"] for j in one["joins"]], 50), pct([j["total"] for j in two["joins"]], 50)
    q1, q2 = pct([j["total"] for j in one["joins"]], 95), pct([j["total"] for j in two["joins"]], 95)
    f1, f2 = pct(one["fanout"], 50), pct(two["fanout"], 50)
    g1, g2 = pct(one["fanout"], 95), pct(two["fanout"], 95)
    lines.append(f"* Join incl. steps: p50 {fmt_ms(j1)} → {fmt_ms(j2)} ms, p95 {fmt_ms(q1)} → {fmt_ms(q2)} ms "
                 f"from one node to two; `room.state` fan-out p50 {fmt_ms(f1)} → {fmt_ms(f2)} ms, p95 "
                 f"{fmt_ms(g1)} → {fmt_ms(g2)} ms.")

    def per_join(res):
        c = res["join_cpu"]
        return 1000 * sum(c["nodes"]) * c["wall"] / max(1, len(res["joins"]))
    c1 = per_join(one)
    lines.append(f"* A participant's way in (its round trips, and the mediator admitting it) costs the nodes about {c1:.0f} ms of CPU and "
                 f"PostgreSQL about {one['pg_xacts'] / max(1, len(one['joins'])):.0f} transactions, so one node "
                 f"(one Python process, one core) tops out roughly near {1000 / c1:.0f} joins/s; this run offered "
                 f"{args.room_rate * args.size:g}/s.")
    s1, s2 = one["join_cpu"], two["join_cpu"]
    lines.append(f"* The machine has {s1['cores']:.0f} cores for everything: during the joins it was "
                 f"{100 * s1['busy'] / s1['cores']:.0f} % busy with one node and {100 * s2['busy'] / s2['cores']:.0f} % "
                 f"with two (clients {100 * s1['clients']:.0f} / {100 * s2['clients']:.0f} % of a core, "
                 f"PostgreSQL + Redis + kernel {100 * s1['other']:.0f} / {100 * s2['other']:.0f} %). A second node "
                 f"on the same cores adds no CPU, only a second event loop; what the two-node run shows is that "
                 f"rooms spread evenly, clients of either node reach their room's node "
                 f"({sum(j['redirects'] for j in two['joins'])} redirects followed) and nothing is lost on the way. "
                 f"Throughput per added node has to be measured on separate machines.")
    g1 = max((x for p in one["fan_gc"] for x in p), default=0)
    g2 = max((x for p in two["fan_gc"] for x in p), default=0)
    h1 = max((x for p in one["join_gc"] for x in p), default=0)
    h2 = max((x for p in two["join_gc"] for x in p), default=0)
    def ms(v: float) -> str:
        return f"{v:.0f} ms" if v else "none ≥ 20 ms"
    lines.append(f"* A full (gen 2) garbage collection stops a node's whole process (event loop, every socket) for "
                 f"a time that grows with the objects it holds, i.e. with the clients on it. Longest pause during the "
                 f"fan-out: {ms(g1)} on one node, {ms(g2)} on two (fan-out max {fmt_ms(pct(one['fanout'], 100))} vs "
                 f"{fmt_ms(pct(two['fanout'], 100))} ms); during the joins {ms(h1)} vs {ms(h2)} (logged by a "
                 f"`gc.callbacks` hook the bench starts the nodes with).")
    lines.append("* Both columns run in cluster mode (REDIS_URL set): the room registry, heartbeats and state saves go "
                 "through Redis; the hub sends a room's events straight to its clients (`ignore_queue`: they are always "
                 "on the room's node), so Redis does not carry the fan-out.")
    errors = [f"{label}: {line}" for label, res in (("1 node", one), ("2 nodes", two), ("media", media))
              for line in (res or {}).get("log", []) if " ERROR " in line or "Error:" in line]
    if errors:
        lines.append("* Server log errors: " + "; ".join(f"`{e}`" for e in errors[:6]) + ".")
    if media and media["rows"]:
        placed = [r["placed"] for r in media["rows"]]
        last = media["rows"][-1]["share"]
        lines.append(f"* Media rooms went to {', '.join(placed)} (each mediator came in through node-a): a new "
                     f"room goes to the node with the lower load score, ties broken by room count. "
                     + (f"Room {media['refused']['room']} was refused with "
                        f"`{media['refused']['error'].get('code')}` once both nodes reported "
                        f"{args.max_streams} streams (full)."
                        if media["refused"] else "No room was refused.")
                     + f" With every node full the nodes used {100 * sum(last['nodes']):.0f} % of a core in all and "
                     f"the {3 * len(media['rows'])} media clients {100 * last['clients']:.0f} %: at "
                     f"NODE_MAX_STREAMS={args.max_streams} the stream cap, not the CPU, decides when a node is full.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
