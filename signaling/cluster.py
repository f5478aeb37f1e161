"""Where live rooms are: one node in memory, or several nodes sharing Redis.

Without REDIS_URL there is one node (`LocalCluster`) and everything stays in this process.
With REDIS_URL (`RedisCluster`) every node writes a heartbeat (its URL, media addresses and
load) under a key that expires after `node_ttl`; a room's registry entry names the node that
hosts it. A new room goes to the least-loaded live node that is not full; a room whose node
stopped beating is taken over by the next node a client reaches; both in one Lua script, so
two nodes never host one room. The session's live state (who was admitted where, caucuses,
recording consent) is kept with the entry, so a room comes back on another node as it was.
Commands that must reach a room wherever it is (end it, withdraw a link, push the agreement)
are published to every node; each one acts on the rooms it hosts.

One module (~460 lines): the registry's local and Redis forms share one interface and the placement script.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

if TYPE_CHECKING:
    from signaling.hub import Hub

log = logging.getLogger("mediation.cluster")

ROOM_TTL = 24 * 3600  # a registry entry nobody touched for a day is garbage

# Host the room on ARGV[2] unless a live node (its heartbeat key exists) already hosts it.
# Returns {node, placed(1/0)}.
PLACE_SCRIPT = """
local cur = redis.call('HGET', KEYS[1], 'node')
if cur and redis.call('EXISTS', ARGV[1] .. cur) == 1 then
  return {cur, 0}
end
if ARGV[2] == '' then
  return {false, 0}
end
redis.call('HSET', KEYS[1], 'node', ARGV[2], 'placed_at', ARGV[3], 'previous', cur or '')
redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
if cur then redis.call('SREM', ARGV[5] .. cur, KEYS[2]) end
redis.call('SADD', ARGV[5] .. ARGV[2], KEYS[2])
return {ARGV[2], 1}
"""


class CapacityError(Exception):
    """Every live node is full."""


class StartError(RuntimeError):
    """This node cannot join the deployment (Redis unreachable, NODE_ID taken)."""


@dataclass
class NodeInfo:
    id: str
    url: str
    media_addresses: list[str] = field(default_factory=list)
    rooms: int = 0
    participants: int = 0
    producers: int = 0
    streams: int = 0          # forwarded streams (consumers)
    cpu: float = 0.0          # share of one core over the last heartbeat
    full: bool = False
    draining: bool = False
    started_at: float = 0.0
    at: float = 0.0

    def score(self, max_streams: int, max_cpu: float) -> float:
        return max(self.streams / max(max_streams, 1), self.cpu / max(max_cpu, 1e-6))


class CpuMeter:
    """This process's CPU time per wall-clock second since the last reading."""

    def __init__(self):
        self._wall = time.monotonic()
        self._cpu = time.process_time()
        self.value = 0.0

    def read(self) -> float:
        wall, cpu = time.monotonic(), time.process_time()
        if wall - self._wall >= 0.2:
            sample = (cpu - self._cpu) / (wall - self._wall)
            self.value = 0.5 * self.value + 0.5 * sample  # one busy second does not make a node full
            self._wall, self._cpu = wall, cpu
        return self.value


def load_of(hub: "Hub", settings, cpu: float, *, draining: bool = False, started_at: float = 0.0) -> NodeInfo:
    participants = producers = streams = 0
    for live in list(hub.rooms.values()):
        for part in list(live.room.participants.values()):
            participants += 1
            producers += sum(1 for p in part.producers.values() if not p.closed)
            sub = getattr(part, "subscribe", None)
            if sub is not None:
                streams += len(sub.consumers)
    info = NodeInfo(id=settings.node_id, url=settings.node_url, media_addresses=list(settings.media_addresses),
                    rooms=len(hub.rooms), participants=participants, producers=producers, streams=streams,
                    cpu=round(cpu, 3), draining=draining, started_at=started_at, at=time.time())
    info.full = streams >= settings.node_max_streams or cpu >= settings.node_max_cpu
    return info


class LocalCluster:
    """One node: every room is here; commands run at once."""

    multi = False

    def __init__(self, hub: "Hub", settings):
        self.hub = hub
        self.settings = settings
        self.node_id = settings.node_id
        self.handlers: dict[str, Callable[..., Awaitable[None]]] = {}
        self.cpu = CpuMeter()
        self.started_at = time.time()

    def on(self, name: str, fn: Callable[..., Awaitable[None]]) -> None:
        self.handlers[name] = fn

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def me(self) -> NodeInfo:
        return load_of(self.hub, self.settings, self.cpu.read(), started_at=self.started_at)

    async def place(self, room_id: str) -> NodeInfo | None:
        """The node that hosts (or now will host) the room; None means this node."""
        return None

    async def save_state(self, room_id: str, state: dict) -> None:
        pass

    async def load_state(self, room_id: str) -> dict | None:
        return None

    async def forget(self, room_id: str) -> None:
        pass

    async def command(self, name: str, **args: Any) -> None:
        await self.handlers[name](**args)

    async def nodes(self) -> list[NodeInfo]:
        return [self.me()]

    def node_urls(self) -> list[str]:
        """Where a client may come back if this node goes away."""
        return [self.settings.node_url]

    async def check(self) -> dict:
        return {"ok": True, "mode": "single", "node": self.node_id}


class RedisCluster(LocalCluster):
    """Several nodes sharing one Redis (see the module's docstring)."""

    multi = True

    def __init__(self, hub: "Hub", settings, redis_url: str):
        super().__init__(hub, settings)
        import redis.asyncio as aioredis
        # A bounded pool that waits for a free connection: a burst of joins and state saves must
        # queue, not fail with "too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(redis_url, decode_responses=True, socket_timeout=2,
                                                        socket_connect_timeout=2, health_check_interval=10,
                                                        max_connections=64, timeout=5)
        self.redis = aioredis.Redis(connection_pool=pool)
        self._place = self.redis.register_script(PLACE_SCRIPT)
        self._tasks: list[asyncio.Task] = []
        self.draining = False
        self.last_beat = 0.0          # monotonic time of the last heartbeat Redis took
        self.beat_error: str | None = None
        self.known: dict[str, NodeInfo] = {}
        self.known_origins: set[str] = {settings.public_url, settings.node_url}
        self.prefix = settings.redis_prefix  # one deployment's keys and channels on a shared Redis

    # --- keys --------------------------------------------------------------------------------

    def node_key(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    def room_key(self, room_id: str) -> str:
        return f"{self.prefix}room:{room_id}"

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._refuse_twin()
            await self.beat()
        except (ConnectionError, OSError, TimeoutError) as exc:
            raise StartError(f"REDIS_URL: cannot reach Redis ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - redis-py's own errors
            if type(exc).__module__.startswith("redis"):
                raise StartError(f"REDIS_URL: cannot reach Redis ({exc})") from None
            raise
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._beat_forever()), loop.create_task(self._listen())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        try:
            await self.redis.delete(self.node_key(self.node_id))
            await self.redis.srem(self.prefix + "nodes", self.node_id)
        except Exception:  # noqa: BLE001 - Redis gone: the key expires by itself
            pass
        await self.redis.aclose()

    async def _refuse_twin(self) -> None:
        """Two processes with one NODE_ID would each take the other's rooms for their own. A
        heartbeat under our id that is still being renewed is another process: refuse to start.
        (A node restarting right after it was killed waits for its old heartbeat to expire.)"""
        key = self.node_key(self.node_id)
        deadline = time.monotonic() + self.settings.node_ttl + 1
        while (text := await self.redis.get(key)) is not None:
            other = json.loads(text)
            if time.monotonic() > deadline:
                raise StartError(f"NODE_ID {self.node_id!r} is in use by a running node ({other.get('url')}); "
                                   "give every node its own NODE_ID")
            await asyncio.sleep(min(0.5, self.settings.node_heartbeat))

    async def beat(self) -> None:
        info = load_of(self.hub, self.settings, self.cpu.read(), draining=self.draining, started_at=self.started_at)
        ttl_ms = int(self.settings.node_ttl * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.node_key(self.node_id), json.dumps(asdict(info)), px=ttl_ms)
            pipe.sadd(self.prefix + "nodes", self.node_id)
            for room_id in list(self.hub.rooms):
                pipe.hget(self.room_key(room_id), "node")
            results = await pipe.execute()
        self.last_beat = time.monotonic()
        self.beat_error = None
        # A room whose entry names another node was taken over while we were silent: let it go.
        for room_id, owner in zip(list(self.hub.rooms), results[2:]):
            if owner is not None and owner != self.node_id:
                log.warning("room %s is now hosted by %s; handing it over", room_id, owner)
                await self.hub.lose_room(room_id)
            elif owner is None:
                await self._claim(room_id, self.node_id)
        await self.nodes()

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.node_heartbeat)
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep serving the rooms; readiness says it
                self.beat_error = repr(exc)
                log.warning("heartbeat failed: %r", exc)

    # --- registry ------------------------------------------------------------------------------

    async def nodes(self) -> list[NodeInfo]:
        ids = sorted(await self.redis.smembers(self.prefix + "nodes"))
        if not ids:
            return []
        raw = await self.redis.mget([self.node_key(i) for i in ids])
        out: list[NodeInfo] = []
        gone = [node_id for node_id, text in zip(ids, raw) if text is None]
        if gone:
            await self.redis.srem(self.prefix + "nodes", *gone)  # a node that comes back adds itself again
        for node_id, text in zip(ids, raw):
            if text is None:
                continue
            try:
                out.append(NodeInfo(**json.loads(text)))
            except (TypeError, ValueError):
                log.warning("unreadable heartbeat of node %s", node_id)
        self.known = {n.id: n for n in out}
        self.known_origins |= {n.url for n in out}
        return out

    async def _room_counts(self, ids: list[str]) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for node_id in ids:
                pipe.scard(f"{self.prefix}noderooms:{node_id}")
            counts = await pipe.execute()
        return dict(zip(ids, counts))

    async def choose(self) -> NodeInfo | None:
        """The least-loaded live node that takes new rooms (rooms placed but not yet counted in
        a heartbeat break ties, so a burst of new rooms spreads out)."""
        live = [n for n in await self.nodes() if not n.draining]
        # Nodes over their CPU mark are passed over while another has room; a node at its
        # stream capacity takes no new room at all.
        nodes = [n for n in live if not n.full] or \
            [n for n in live if n.streams < self.settings.node_max_streams]
        if not nodes:
            return None
        counts = await self._room_counts([n.id for n in nodes])
        s = self.settings
        return min(nodes, key=lambda n: (round(n.score(s.node_max_streams, s.node_max_cpu), 1),
                                         counts.get(n.id, 0), n.participants, n.id != self.node_id))

    async def place(self, room_id: str) -> NodeInfo | None:
        key = self.room_key(room_id)
        owner = await self.redis.hget(key, "node")
        if owner and await self.redis.exists(self.node_key(owner)):
            if owner != self.node_id and owner not in self.known:
                await self.nodes()  # a node that started since our last heartbeat
            return self._node_or_me(owner)
        chosen = await self.choose()
        node, placed = await self._claim(room_id, chosen.id if chosen else "")
        if node is None:
            raise CapacityError()
        if placed:
            log.info("room %s placed on %s%s", room_id, node, f" (was {owner})" if owner else "")
        elif node != self.node_id and node not in self.known:
            await self.nodes()
        return self._node_or_me(node)

    async def _claim(self, room_id: str, node_id: str) -> tuple[str | None, int]:
        """PLACE_SCRIPT: host the room on node_id ("" = nobody can) unless a live node does."""
        return await self._place(keys=[self.room_key(room_id), room_id],
                                 args=[self.prefix + "node:", node_id, time.time(), ROOM_TTL,
                                       self.prefix + "noderooms:"])

    def _node_or_me(self, node_id: str) -> NodeInfo | None:
        if node_id == self.node_id:
            return None
        return self.known.get(node_id) or NodeInfo(id=node_id, url="")

    async def save_state(self, room_id: str, state: dict) -> None:
        key = self.room_key(room_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping={"state": json.dumps(state), "saved_at": time.time()})
            pipe.expire(key, ROOM_TTL)
            await pipe.execute()

    async def load_state(self, room_id: str) -> dict | None:
        text = await self.redis.hget(self.room_key(room_id), "state")
        return json.loads(text) if text else None

    async def forget(self, room_id: str) -> None:
        """The room ended here (or was let go when empty): its entry and state go."""
        key = self.room_key(room_id)
        owner = await self.redis.hget(key, "node")
        if owner not in (None, self.node_id):
            return  # another node hosts it now
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.srem(f"{self.prefix}noderooms:{self.node_id}", room_id)
            await pipe.execute()

    async def release(self, room_id: str) -> None:
        """Hand the room over (this node is shutting down): keep its state, drop its host."""
        key = self.room_key(room_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(key, "node")
            pipe.srem(f"{self.prefix}noderooms:{self.node_id}", room_id)
            await pipe.execute()

    # --- commands ------------------------------------------------------------------------------

    async def command(self, name: str, **args: Any) -> None:
        """Run here at once, and on every other node through Redis."""
        await self.handlers[name](**args)
        try:
            await self.redis.publish(self.prefix + "commands", json.dumps({"from": self.node_id, "name": name, "args": args}))
        except Exception:  # noqa: BLE001 - this node's part is done; say what did not travel
            log.exception("could not publish command %s", name)

    async def _listen(self) -> None:
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.prefix + "commands")
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        body = json.loads(message["data"])
                        if body.get("from") == self.node_id or body.get("name") not in self.handlers:
                            continue
                        await self.handlers[body["name"]](**body.get("args", {}))
                    except Exception:  # noqa: BLE001 - one bad command must not stop the listener
                        log.exception("command failed: %.200s", message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis went away: listen again shortly
                log.warning("command listener: %r; retrying", exc)
                await asyncio.sleep(1)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:  # noqa: BLE001
                    pass

    # --- health --------------------------------------------------------------------------------

    def node_urls(self) -> list[str]:
        return sorted({n.url for n in self.known.values() if n.url and not n.draining} | {self.settings.node_url})

    def allowed_origin(self, origin: str | None) -> bool:
        # Pages of any node of this deployment may open the socket of the node hosting the room.
        return origin is None or origin.rstrip("/") in self.known_origins

    async def check(self) -> dict:
        out: dict[str, Any] = {"mode": "cluster", "node": self.node_id, "draining": self.draining}
        try:
            await asyncio.wait_for(self.redis.ping(), timeout=2)
            out["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001
            out["redis"] = repr(exc)
        age = time.monotonic() - self.last_beat if self.last_beat else None
        out["heartbeat_age"] = round(age, 2) if age is not None else None
        if self.beat_error:
            out["heartbeat_error"] = self.beat_error
        out["ok"] = (out["redis"] == "ok" and age is not None and age < self.settings.node_ttl
                     and not self.draining)
        return out


async def registry_view(settings) -> dict:
    """The deployment as Redis holds it: live nodes with their load, and each room's node and
    participants (for `mediation nodes`)."""
    import redis.asyncio as aioredis
    r = aioredis.from_url(settings.redis_url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)
    prefix = settings.redis_prefix
    try:
        ids = sorted(await r.smembers(prefix + "nodes"))
        raw = await r.mget([f"{prefix}node:{i}" for i in ids]) if ids else []
        nodes = [json.loads(t) for t in raw if t]
        alive = {n["id"] for n in nodes}
        rooms = []
        async for key in r.scan_iter(match=f"{prefix}room:*", count=500):
            entry = await r.hgetall(key)
            state = json.loads(entry["state"]) if entry.get("state") else {}
            node = entry.get("node")
            rooms.append({"room": key[len(prefix) + 5:], "node": node, "node_alive": node in alive,
                          "session_id": state.get("session_id"),
                          "participants": [{k: p.get(k) for k in ("id", "name", "role", "area")}
                                           for p in state.get("participants") or []]})
    finally:
        await r.aclose()
    return {"nodes": nodes, "rooms": sorted(rooms, key=lambda x: (x["node"] or "", x["room"]))}


def make_cluster(hub: "Hub", settings) -> LocalCluster:
    if settings.redis_url:
        return RedisCluster(hub, settings, settings.redis_url)
    return LocalCluster(hub, settings)


__all__ = ["CapacityError", "StartError", "LocalCluster", "NodeInfo", "RedisCluster", "make_cluster"]
