"""Liveness and readiness: GET /healthz and GET /readyz (for load balancers and orchestrators).

/healthz answers whenever the process serves HTTP and does no I/O. /readyz says whether this
node should be given work: the database answers a `SELECT 1` in time, the cluster membership
(hub.cluster, when there is one) is healthy, and the app is not shutting down.
"""
from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from sqlalchemy import text

log = logging.getLogger("mediation.health")

PATHS = ("/healthz", "/readyz")
NO_STORE = {"Cache-Control": "no-store"}


class Health:
    """Per-app readiness state (app["health"])."""

    def __init__(self, db_timeout: float = 2.0, cluster_timeout: float = 3.0):
        self.db_timeout = db_timeout
        self.cluster_timeout = cluster_timeout
        self.shutting_down = False
        self.ready: bool | None = None  # the last answer, to log changes only (probes poll often)


async def check_database(db, timeout: float) -> dict:
    started = time.monotonic()

    async def ping():
        async with db.read() as s:
            await s.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(ping(), timeout)
    except asyncio.TimeoutError:
        return {"ok": False, "error": f"no answer within {timeout:g} s"}
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", never a 500
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}


async def check_cluster(cluster, timeout: float) -> dict:
    try:
        result = await asyncio.wait_for(cluster.check(), timeout)
    except asyncio.TimeoutError:
        return {"ok": False, "error": f"no answer within {timeout:g} s"}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    if not isinstance(result, dict):
        return {"ok": False, "error": f"cluster.check() returned {type(result).__name__}"}
    return {**result, "ok": bool(result.get("ok"))}


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "node": request.app["settings"].node_id}, headers=NO_STORE)


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    health: Health = app["health"]
    node = app["settings"].node_id
    if health.shutting_down:
        return web.json_response({"status": "shutting_down", "node": node,
                                  "checks": {"accepting": {"ok": False}}}, status=503, headers=NO_STORE)
    checks = {"database": check_database(app["db"], health.db_timeout)}
    cluster = getattr(app["hub"], "cluster", None)  # signaling/cluster.py, when it is there
    if cluster is not None:
        checks["cluster"] = check_cluster(cluster, health.cluster_timeout)
    results = dict(zip(checks, await asyncio.gather(*checks.values())))
    ok = all(r["ok"] for r in results.values())
    if ok != health.ready:
        health.ready = ok
        if ok:
            log.info("ready")
        else:
            log.warning("not ready: %s", {k: v for k, v in results.items() if not v["ok"]})
    return web.json_response({"status": "ok" if ok else "not_ready", "node": node, "checks": results},
                             status=200 if ok else 503, headers=NO_STORE)


def setup(app: web.Application) -> None:
    app["health"] = health = Health()

    async def mark_shutting_down(_app):
        health.shutting_down = True

    # First in line: a load balancer polling /readyz stops sending work before rooms are closed.
    app.on_shutdown.insert(0, mark_shutting_down)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
