"""/metrics on a real server with real aiortc peers: the room gauges, the forwarding counters,
the join histogram, recording bytes and the event-loop lag watcher."""
from __future__ import annotations

import asyncio

import aiohttp
from sqlalchemy import select

from server.http.app import create_app
from server.core.models import RecordingFile
from tests.rooms.clients import wait_for
from tests.signaling.peer import Peer, admitted

from .conftest import scrape

GAUGES = ("mediation_rooms", "mediation_participants", "mediation_participants_by_area", "mediation_producers",
          "mediation_consumers", "mediation_event_loop_lag_last_seconds")
COUNTERS = ("mediation_forwarded_frames", "mediation_forwarded_bytes", "mediation_recording_bytes_written")
HISTOGRAMS = ("mediation_join_seconds", "mediation_event_loop_lag_seconds")


def _viewer_consumers(room):
    return [c for p in room.producers() for c in p.consumers.values() if c.egress]


async def _until(http, url, predicate, what, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        m = await scrape(http, url)
        if predicate(m):
            return m
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_metrics_follow_a_live_room(live, media):
    node = live.settings.node_id
    n = {"node": node}
    async with aiohttp.ClientSession() as http:
        m = await scrape(http, live.url)
        for name, kind in [(g, "gauge") for g in GAUGES] + [(c, "counter") for c in COUNTERS] + \
                          [(h, "histogram") for h in HISTOGRAMS]:
            assert m.families[name].type == kind, name
            assert all(s.labels["node"] == node for s in m.families[name].samples), name
        assert "process_cpu_seconds" in m.families
        assert m("mediation_rooms", **n) == 0 and m("mediation_participants", **n) == 0
        assert m("mediation_join_seconds_count", **n) == 0
        frames0 = m("mediation_forwarded_frames_total", **n)
        packets0 = m("mediation_forwarded_packets_total", **n)
        bytes0 = m("mediation_forwarded_bytes_total", **n)

        mediator = Peer(live.url, await live.token("mediator"), media)
        party = None
        try:
            assert (await mediator.join())["ok"]
            assert (await mediator.publish())["ok"]
            party = await admitted(live.url, media, mediator, await live.token("party", party_id=live.party_ids[0]))
            await wait_for(lambda: party.frames_from(mediator.me["id"]) > 5, what="party decodes mediator")
            await wait_for(lambda: mediator.frames_from(party.me["id"]) > 5, what="mediator decodes party")
            room = live.app["hub"].rooms[live.room_id].room
            await wait_for(lambda: len(_viewer_consumers(room)) == 4
                           and all(c.frames > 0 for c in _viewer_consumers(room)), what="4 streams forwarding")

            consumers = _viewer_consumers(room)
            frames_before = sum(c.frames for c in consumers)
            bytes_before = sum(c.bytes for c in consumers)
            m = await scrape(http, live.url)
            frames_after = sum(c.frames for c in consumers)
            bytes_after = sum(c.bytes for c in consumers)
            # Nothing forwarded so far went to a consumer that is gone.
            assert sum(room.delivery_counts().values()) == frames_after

            assert m("mediation_rooms", **n) == 1
            assert m("mediation_participants", **n) == 2
            assert [m("mediation_participants_by_area", area=a, **n) for a in ("lobby", "main", "caucus")] == [0, 2, 0]
            assert m("mediation_producers", kind="audio", **n) == 2 and m("mediation_producers", kind="video", **n) == 2
            assert m("mediation_consumers", sink="viewer", **n) == 4
            assert m("mediation_consumers", sink="recorder", **n) == 0
            forwarded = m("mediation_forwarded_frames_total", **n) - frames0
            forwarded_bytes = m("mediation_forwarded_bytes_total", **n) - bytes0
            assert frames_before > 20 and frames_before <= forwarded <= frames_after
            assert bytes_before > 1000 and bytes_before <= forwarded_bytes <= bytes_after
            # Forwarded frames leave as one RTP packet or more (a few may still wait in a sender's queue).
            assert m("mediation_forwarded_packets_total", **n) - packets0 >= 0.9 * forwarded
            # Two successful joins (the refusals asking for consent and notices first are not joins).
            assert m("mediation_join_seconds_count", **n) == 2
            assert m("mediation_join_seconds_sum", **n) > 0
            assert m("mediation_join_seconds_bucket", le="+Inf", **n) == 2

            # The party leaves: the gauges drop, the counters keep what was forwarded.
            party_id = party.me["id"]
            await party.close()
            party = None
            m = await _until(http, live.url, lambda m: m("mediation_participants", **n) == 1,
                             what="the party gone from the gauges")
            assert room.participants.keys() == {mediator.me["id"]} and party_id not in room.participants
            assert [m("mediation_participants_by_area", area=a, **n) for a in ("lobby", "main", "caucus")] == [0, 1, 0]
            assert m("mediation_producers", kind="audio", **n) == 1 and m("mediation_producers", kind="video", **n) == 1
            assert m("mediation_consumers", sink="viewer", **n) == 0
            assert m("mediation_forwarded_frames_total", **n) - frames0 >= frames_after
        finally:
            if party is not None:
                await party.close()
            await mediator.close()


async def test_recording_bytes_are_the_files_written(live, media):
    n = {"node": live.settings.node_id}
    async with aiohttp.ClientSession() as http:
        before = (await scrape(http, live.url))("mediation_recording_bytes_written_total", **n)
        mediator = Peer(live.url, await live.token("mediator"), media)
        await mediator.join()
        await mediator.publish()
        party = await admitted(live.url, media, mediator, await live.token("party", party_id=live.party_ids[0]))
        try:
            await mediator.call("recording.start")
            await wait_for(lambda: party.events["recording.consent_request"], what="asked")
            await party.call("recording.consent", {"agree": True})
            await wait_for(lambda: mediator.state["recording"]["active"], what="recording on")
            m = await _until(http, live.url, lambda m: m("mediation_consumers", sink="recorder", **n) == 4,
                             what="both participants' tracks recorded")
            assert m("mediation_consumers", sink="viewer", **n) == 4
            await _until(http, live.url, lambda m: m("mediation_recording_bytes_written_total", **n) > before,
                         what="bytes reaching the files while recording")
            assert (await mediator.call("recording.stop"))["ok"]
            m = await scrape(http, live.url)
        finally:
            await party.close()
            await mediator.close()
    async with live.db.read() as s:
        sizes = (await s.execute(select(RecordingFile.size))).scalars().all()
    assert len(sizes) == 2 and all(size > 0 for size in sizes)
    assert m("mediation_recording_bytes_written_total", **n) - before == sum(sizes)
    assert m("mediation_consumers", sink="recorder", **n) == 0


async def test_event_loop_lag_is_measured(live):
    n = {"node": live.settings.node_id}
    async with aiohttp.ClientSession() as http:
        m = await _until(http, live.url, lambda m: m("mediation_event_loop_lag_seconds_count", **n) >= 2,
                         what="two lag measurements")
    assert m("mediation_event_loop_lag_last_seconds", **n) >= 0
    assert m("mediation_event_loop_lag_seconds_sum", **n) >= 0


async def test_each_app_has_its_own_registry(settings, db):
    first, second = create_app(settings, db=db), create_app(settings, db=db)
    assert first["metrics"].registry is not second["metrics"].registry
    first["hub"].join_observers[-1](0.2)
    assert b'mediation_join_seconds_count{node="%s"} 1.0' % settings.node_id.encode() in first["metrics"].render()
    assert b'mediation_join_seconds_count{node="%s"} 0.0' % settings.node_id.encode() in second["metrics"].render()
