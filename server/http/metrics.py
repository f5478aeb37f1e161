"""Prometheus metrics: GET /metrics (text exposition format).

One CollectorRegistry per app (never prometheus_client's global one): tests build several
apps in one process. Every mediation_* series carries the node id as the `node` label.

What is counted on the media hot path lives in rooms.stats (plain ints); the room gauges are
computed from hub.rooms when scraped. Nothing here runs per frame.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector

from rooms.participant import LOBBY, MAIN
from rooms.stats import STATS, MediaStats

log = logging.getLogger("mediation.metrics")

PATH = "/metrics"
LOOP_LAG_INTERVAL = 0.5  # s the watcher sleeps; what it oversleeps is the loop's lag
JOIN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class LiveCollector:
    """Room gauges from app["hub"].rooms and the process-wide media counters, at scrape time."""

    def __init__(self, app: web.Application, node: str, stats: MediaStats = STATS):
        self.app = app
        self.node = node
        self.stats = stats

    def describe(self):
        return []  # do not collect at registration (the hub may not exist yet)

    def collect(self):
        node = self.node
        rooms = participants = 0
        areas = {LOBBY: 0, MAIN: 0, "caucus": 0}
        producers = {"audio": 0, "video": 0}
        consumers = {"viewer": 0, "recorder": 0}
        hub = self.app.get("hub")
        for live in list(hub.rooms.values()) if hub is not None else []:
            room = live.room
            if room.closed:
                continue
            rooms += 1
            for participant in room.participants.values():
                participants += 1
                area = participant.area if participant.area in (LOBBY, MAIN) else "caucus"
                areas[area] += 1
                for producer in participant.producers.values():
                    if producer.closed:
                        continue
                    producers[producer.kind] = producers.get(producer.kind, 0) + 1
                    for consumer in producer.consumers.values():
                        consumers["viewer" if consumer.egress else "recorder"] += 1

        def gauge(name, doc, value):
            family = GaugeMetricFamily(name, doc, labels=["node"])
            family.add_metric([node], value)
            return family

        def labelled(name, doc, label, values):
            family = GaugeMetricFamily(name, doc, labels=["node", label])
            for key, value in values.items():
                family.add_metric([node, key], value)
            return family

        def counter(name, doc, value):
            family = CounterMetricFamily(name, doc, labels=["node"])
            family.add_metric([node], value)
            return family

        yield gauge("mediation_rooms", "Live rooms on this node.", rooms)
        yield gauge("mediation_participants", "Participants in live rooms on this node.", participants)
        yield labelled("mediation_participants_by_area", "Participants by area: lobby, main or any caucus.",
                       "area", areas)
        yield labelled("mediation_producers", "Incoming tracks (producers) by kind.", "kind", producers)
        yield labelled("mediation_consumers", "Outgoing copies of producers (forwarded streams): to viewers, "
                       "or to recorders.", "sink", consumers)
        stats = self.stats
        yield counter("mediation_forwarded_frames", "Encoded frames (Opus packets, video pictures) forwarded "
                      "to viewers.", stats.forwarded_frames)
        yield counter("mediation_forwarded_packets", "RTP packets sent to viewers (the forwarded frames, packetized).",
                      stats.forwarded_packets)
        yield counter("mediation_forwarded_bytes", "Payload bytes of the frames forwarded to viewers.",
                      stats.forwarded_bytes)
        yield counter("mediation_recording_bytes_written", "Bytes recording files grew by.", stats.recorded_bytes)


class Metrics:
    """app["metrics"]: the app's registry and the metrics it records itself."""

    def __init__(self, app: web.Application, node: str):
        self.node = node
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(LiveCollector(app, node))
        ProcessCollector(registry=self.registry)  # process_* (CPU, memory, fds); Linux only
        self.join_seconds = Histogram(
            "mediation_join_seconds", "Time a successful join took on the server (token, checks, database).",
            ["node"], registry=self.registry, buckets=JOIN_BUCKETS).labels(node)
        self.loop_lag = Gauge(
            "mediation_event_loop_lag_last_seconds", "The event loop's latest measured lag.",
            ["node"], registry=self.registry).labels(node)
        self.loop_lag_seconds = Histogram(
            "mediation_event_loop_lag_seconds", f"How late a {LOOP_LAG_INTERVAL:g} s sleep on the event loop "
            "woke up.", ["node"], registry=self.registry, buckets=LAG_BUCKETS).labels(node)
        self._lag_task: asyncio.Task | None = None

    def observe_join(self, seconds: float) -> None:
        self.join_seconds.observe(seconds)

    def record_lag(self, seconds: float) -> None:
        self.loop_lag.set(seconds)
        self.loop_lag_seconds.observe(seconds)

    async def _watch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(LOOP_LAG_INTERVAL)
            self.record_lag(max(0.0, loop.time() - started - LOOP_LAG_INTERVAL))

    def start(self) -> None:
        if self._lag_task is None:
            self._lag_task = asyncio.get_running_loop().create_task(self._watch_loop(), name="event-loop-lag")

    async def stop(self) -> None:
        task, self._lag_task = self._lag_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def metrics_handler(request: web.Request) -> web.Response:
    body = request.app["metrics"].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})


def setup(app: web.Application) -> None:
    """After app["hub"] exists: register the routes, the join observer and the lag watcher."""
    metrics = app["metrics"] = Metrics(app, app["settings"].node_id)
    app["hub"].join_observers.append(metrics.observe_join)

    async def start(_app):
        metrics.start()

    async def stop(_app):
        await metrics.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_get(PATH, metrics_handler)
