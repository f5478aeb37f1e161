"""Several nodes, one deployment: rooms placed on one node, clients sent there, and a node's
death survived (the room comes back on a live node as it was; clients return by themselves)."""
from __future__ import annotations

import json
import time
import urllib.request

import pytest
from sqlalchemy import select

from server.core.models import AuditEntry, RecordingRun
from tests.rooms.clients import Media, wait_for
from tests.signaling.peer import Peer


@pytest.fixture(scope="module")
def media() -> Media:
    return Media()


def _cli_json(node, *args) -> dict:
    import subprocess
    import sys

    from tests.cluster.conftest import ROOT
    out = subprocess.run([sys.executable, "-m", "server.cli", *args], cwd=ROOT, env=node.env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


async def _mediator_and_party(d, media, mediator_url, party_url, **kw):
    mediator = Peer(mediator_url, await d.token("mediator"), media, **kw)
    party = Peer(party_url, await d.token("party", party_id=d.party_ids[0]), media, **kw)
    ack = await mediator.join()
    assert ack["ok"], ack
    ack = await party.join()
    assert ack["ok"], ack
    assert ack["in_lobby"]
    assert (await mediator.call("lobby.admit", {"participant_id": party.me["id"]}))["ok"]
    assert (await mediator.publish())["ok"]
    assert (await party.publish())["ok"]
    return mediator, party


async def test_clients_of_different_nodes_meet_on_the_rooms_node(deployment, media):
    a, b, _c = deployment.nodes
    mediator, party = await _mediator_and_party(deployment, media, a.url, b.url)
    try:
        # The first join placed the room on a node; the other client was sent there.
        host = mediator.node["url"]
        assert party.node["url"] == host
        assert mediator.node["id"] == party.node["id"]
        assert (party.redirects or mediator.redirects), "one of the two came in through another node"
        await wait_for(lambda: mediator.frames_from(party.me["id"]) > 5 and party.frames_from(mediator.me["id"]) > 5,
                       timeout=15, what="media both ways through the room's node")
        ids = {p["id"] for p in mediator.state["participants"]}
        assert {mediator.me["id"], party.me["id"]} <= ids
        # Every node is ready (urlopen raises on a 503).
        for n in deployment.nodes:
            _get_json(n.url + "/readyz")
        # The operator's view of the registry: three live nodes, the room on its node with both people.
        view = _cli_json(deployment.nodes[0], "nodes", "--json")
        assert sorted(n["id"] for n in view["nodes"]) == ["node-a", "node-b", "node-c"]
        (room,) = [r for r in view["rooms"] if r["room"] == deployment.room_id]
        assert room["node"] == mediator.node["id"] and room["node_alive"] and room["session_id"] == deployment.session_id
        assert sorted(p["role"] for p in room["participants"]) == ["mediator", "party"]
        assert next(n for n in view["nodes"] if n["id"] == room["node"])["rooms"] == 1
        # A REST call on a node that does not host the room reaches it (through Redis).
        other = next(n for n in deployment.nodes if n.url != host)
        body = json.dumps({"username": "mediator", "password": "correct-horse-42"}).encode()
        req = urllib.request.Request(other.url + "/api/v1/auth/login", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            token = json.loads(resp.read())["token"]
        req = urllib.request.Request(f"{other.url}/api/v1/sessions/{deployment.session_id}/end", b"{}",
                                     {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
        await wait_for(lambda: party.events["session.ended"] and mediator.events["session.ended"], timeout=10,
                       what="session.ended from another node's REST call")
    finally:
        await party.close()
        await mediator.close()


async def test_new_rooms_go_to_the_least_loaded_node(deployment, media):
    a, b, c = deployment.nodes
    peers = []
    try:
        hosts = []
        # Three rooms, each first joined through node a: placement spreads them over the nodes.
        for _ in range(3):
            session_id = await deployment.new_session()
            peer = Peer(a.url, await deployment.token("mediator", session_id=session_id), media)
            peers.append(peer)
            ack = await peer.join()
            assert ack["ok"], ack
            hosts.append(peer.node["id"])
        assert sorted(hosts) == ["node-a", "node-b", "node-c"], hosts
        # Every node reports its rooms in its heartbeat (readiness shows the cluster view).
        for n in deployment.nodes:
            assert _get_json(n.url + "/readyz")["checks"]["cluster"]["ok"] is True
    finally:
        for peer in peers:
            await peer.close()


async def test_a_full_deployment_refuses_new_rooms_clearly(make_nodes, pg_database, tmp_path, media):
    (node,) = make_nodes(1, NODE_MAX_STREAMS="0")
    from tests.cluster.conftest import seed_session
    d = await seed_session(pg_database, tmp_path)
    peer = Peer(node.url, await d.token("mediator"), media)
    try:
        ack = await peer.join()
        assert ack == {"ok": False, "error": {"code": "capacity", "message": ack["error"]["message"]}}, ack
        assert "full" in ack["error"]["message"]
    finally:
        await peer.close()
        await d.db.dispose()


async def test_a_dead_node_loses_its_room_to_a_live_one_with_the_session_state(deployment, media):
    nodes = {n.url: n for n in deployment.nodes}
    a, b, c = deployment.nodes
    fallback = tuple(n.url for n in deployment.nodes)
    mediator, party = await _mediator_and_party(deployment, media, a.url, b.url, rejoin=True, fallback=fallback)
    try:
        await wait_for(lambda: mediator.frames_from(party.me["id"]) > 5, timeout=15, what="media before")
        # Session state worth keeping: a caucus, and a recording the party agreed to.
        caucus = (await mediator.call("caucus.create", {"name": "背对背"}))
        assert caucus["ok"], caucus
        assert (await mediator.call("recording.start"))["ok"]
        await wait_for(lambda: party.events["recording.consent_request"], what="consent request")
        assert (await party.call("recording.consent", {"agree": True}))["ok"]
        await wait_for(lambda: (mediator.state or {}).get("recording", {}).get("active"), what="recording on")
        await wait_for(lambda: caucus["caucus_id"] in _caucus_ids(mediator.state), what="caucus in state")
        dead = nodes[mediator.node["url"]]
        frames_before = mediator.frames_from(party.me["id"])
        killed_at = time.monotonic()
        dead.kill()

        # Both clients come back by themselves, on a live node, and media flows again.
        await wait_for(lambda: mediator.rejoins >= 1 and party.rejoins >= 1, timeout=30,
                       what=f"both clients back in the room (events: {dict(mediator.events)!r:.600})")
        assert mediator.node["id"] != dead.node_id and mediator.node["id"] == party.node["id"]
        await wait_for(lambda: mediator.frames_from(party.me["id"]) > 5 and party.frames_from(mediator.me["id"]) > 5,
                       timeout=20, what="media both ways on the new node")
        print(f"room back with media {time.monotonic() - killed_at:.1f} s after the kill "
              f"(frames before {frames_before})")
        # The session's state came along: admitted (not back in the lobby), the caucus, the consent.
        state = party.state
        me = next(p for p in state["participants"] if p["id"] == party.me["id"])
        assert me["where"] == "main"
        assert caucus["caucus_id"] in _caucus_ids(mediator.state)
        rec = mediator.state["recording"]
        assert rec["active"] is True and rec["consent"].get(party.me["id"]) == "yes", rec
        async with deployment.db.read() as s:
            restored = (await s.execute(select(AuditEntry).where(
                AuditEntry.session_id == deployment.session_id, AuditEntry.action == "room.restored"))).scalars().all()
        assert restored and restored[-1].data["from_node"] == dead.node_id

        # The dead node's recording is finalised when that node starts again.
        dead.start()
        async def runs():
            async with deployment.db.read() as s:
                return (await s.execute(select(RecordingRun).where(
                    RecordingRun.session_id == deployment.session_id))).scalars().all()
        deadline = time.monotonic() + 30
        while not await runs():
            assert time.monotonic() < deadline, "the restarted node did not recover its recording"
            import asyncio
            await asyncio.sleep(0.3)
    finally:
        await party.close()
        await mediator.close()


async def test_an_orderly_stop_hands_the_room_over_and_finishes_the_recording(deployment, media):
    fallback = tuple(n.url for n in deployment.nodes)
    a, b, _c = deployment.nodes
    mediator, party = await _mediator_and_party(deployment, media, a.url, b.url, rejoin=True, fallback=fallback)
    try:
        await wait_for(lambda: party.frames_from(mediator.me["id"]) > 5, timeout=15, what="media before")
        assert (await mediator.call("recording.start"))["ok"]
        await wait_for(lambda: party.events["recording.consent_request"], what="consent request")
        assert (await party.call("recording.consent", {"agree": True}))["ok"]
        await wait_for(lambda: (mediator.state or {}).get("recording", {}).get("active"), what="recording on")
        await wait_for(lambda: mediator.frames_from(party.me["id"]) > 10, timeout=10, what="something recorded")
        host = next(n for n in deployment.nodes if n.url == mediator.node["url"])
        assert await host.terminate() == 0, host.log()[-3000:]
        # The clients were told the room moved, and came back on another node by themselves.
        assert mediator.events["room.moved"] and party.events["room.moved"]
        await wait_for(lambda: mediator.rejoins >= 1 and party.rejoins >= 1, timeout=20, what="both back")
        assert mediator.node["id"] != host.node_id
        await wait_for(lambda: mediator.frames_from(party.me["id"]) > 5 and party.frames_from(mediator.me["id"]) > 5,
                       timeout=20, what="media on the new node")
        assert mediator.state["recording"]["active"] is True
        # The stopped node finished and attached its part of the recording before exiting.
        async with deployment.db.read() as s:
            runs = (await s.execute(select(RecordingRun).where(
                RecordingRun.session_id == deployment.session_id))).scalars().all()
        assert len(runs) == 1 and runs[0].status != "interrupted", [(r.run_key, r.status) for r in runs]
    finally:
        await party.close()
        await mediator.close()


def _caucus_ids(state) -> list[str]:
    caucuses = (state or {}).get("caucuses") or []
    return [c["id"] if isinstance(c, dict) else c for c in caucuses]


def test_a_second_process_with_a_node_id_in_use_refuses_to_start(make_nodes, tmp_path):
    import subprocess
    import sys

    from tests.support.servers import ROOT, free_port as _free_port
    (node,) = make_nodes(1)
    port = _free_port()
    env = dict(node.env, NODE_URL=f"http://127.0.0.1:{port}", MEDIATION_DATA_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "server.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "NODE_ID 'node-a' is in use by a running node" in proc.stdout + proc.stderr
    _get_json(node.url + "/readyz")  # the running node is untouched
