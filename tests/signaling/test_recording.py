"""Recording with consent through the live room: refusal, start, caucus rule, newcomers, stop,
files attached to the session with a signed manifest, and tampering caught."""
from __future__ import annotations

import asyncio

from sqlalchemy import select

from server.core.models import AuditEntry, RecordingFile, RecordingRun
from server.services import recordings as rec_svc
from tests.rooms.clients import wait_for

from .peer import Peer, admitted


async def _admitted(live, media, mediator, token):
    return await admitted(live.url, media, mediator, token)


async def _actions(live):
    async with live.db.read() as s:
        return [(e.action, e.data) for e in (await s.execute(select(AuditEntry).where(
            AuditEntry.session_id == live.session_id).order_by(AuditEntry.seq))).scalars()]


async def test_a_party_refusal_means_no_recording(live, media):
    mediator = Peer(live.url, await live.token("mediator"), media)
    await mediator.join()
    await mediator.publish()
    a = await _admitted(live, media, mediator, await live.token("party", party_id=live.party_ids[0]))
    b = await _admitted(live, media, mediator, await live.token("party", party_id=live.party_ids[1]))
    try:
        assert (await a.call("recording.start"))["error"]["code"] == "forbidden"
        ack = await mediator.call("recording.start")
        assert ack["ok"] and ack["recording"]["pending"]
        await wait_for(lambda: a.events["recording.consent_request"] and b.events["recording.consent_request"],
                       what="both parties asked")
        assert (await a.call("recording.consent", {"agree": True}))["ok"]
        assert (await b.call("recording.consent", {"agree": False}))["ok"]
        await wait_for(lambda: mediator.events["recording.refused"], what="mediator told")
        await wait_for(lambda: not mediator.state["recording"]["pending"], what="state shows no recording")
        assert not mediator.state["recording"]["active"]
        assert (await b.call("recording.consent", {"agree": True}))["error"]["code"] == "not_asked"
    finally:
        for p in (b, a, mediator):
            await p.close()
    actions = [a for a, _ in await _actions(live)]
    assert "recording.refused" in actions and "recording.started" not in actions
    assert [d["agree"] for a_, d in await _actions(live) if a_ == "recording.consent"] == [True, False]
    media_files = [p for p in live.settings.recordings_dir.rglob("*") if p.suffix in (".webm", ".mkv")]
    assert media_files == []


async def test_consented_recording_follows_the_rules_and_is_attached(live, media):
    mediator = Peer(live.url, await live.token("mediator"), media)
    await mediator.join()
    await mediator.publish()
    a = await _admitted(live, media, mediator, await live.token("party", party_id=live.party_ids[0]))
    b = await _admitted(live, media, mediator, await live.token("party", party_id=live.party_ids[1]))
    late = None
    try:
        await mediator.call("recording.start")
        await wait_for(lambda: a.events["recording.consent_request"] and b.events["recording.consent_request"],
                       what="asked")
        await a.call("recording.consent", {"agree": True})
        await b.call("recording.consent", {"agree": True})
        await wait_for(lambda: mediator.state["recording"]["active"], what="recording on")
        controller = live.app["hub"].rooms[live.room_id].recording
        await asyncio.sleep(1.5)
        # A caucus is not recorded unless the mediator enables it.
        caucus = (await mediator.call("caucus.create", {"name": "背对背"}))["caucus_id"]
        await mediator.call("participant.move", {"participant_id": a.me["id"], "to": caucus})
        await wait_for(lambda: controller.recorder.is_paused(a.me["id"]), what="caucus member paused")
        await asyncio.sleep(1.0)
        await mediator.call("participant.move", {"participant_id": a.me["id"], "to": "main"})
        await wait_for(lambda: not controller.recorder.is_paused(a.me["id"]), what="resumed in main")
        # Someone arriving while it runs is asked, and is not recorded before agreeing.
        late = Peer(live.url, await live.token("observer", name="旁听法官"), media)
        await late.join()
        await wait_for(lambda: late.events["recording.consent_request"], what="newcomer asked")
        await asyncio.sleep(1.0)
        ack = await mediator.call("recording.stop")
        assert ack["ok"] and ack["run"]
        await wait_for(lambda: not mediator.state["recording"]["active"], what="recording off")
    finally:
        for p in [x for x in (late, b, a, mediator) if x]:
            await p.close()
    async with live.db.read() as s:
        runs = (await s.execute(select(RecordingRun))).scalars().all()
        files = (await s.execute(select(RecordingFile).order_by(RecordingFile.participant_id,
                                                                 RecordingFile.segment))).scalars().all()
        problems = await rec_svc.verify_session(s, live.settings, live.session_id)
    assert len(runs) == 1 and runs[0].status == "complete"
    assert problems == []
    by_participant: dict[str, list] = {}
    for f in files:
        by_participant.setdefault(f.participant_id, []).append(f)
    assert set(by_participant) == {mediator.me["id"], a.me["id"], b.me["id"]}  # not the observer
    # The caucus period is a gap in a's timeline: two segments, the second starting later.
    segs = by_participant[a.me["id"]]
    assert len(segs) >= 2 and segs[1].offset >= segs[0].offset + segs[0].duration + 0.5
    stopped = [d for act, d in await _actions(live) if act == "recording.stopped"]
    assert stopped and stopped[0]["manifest_sha256"] == runs[0].manifest_sha256

    # Tampering with one file is caught.
    path = rec_svc.store_for(live.settings).path(files[0].key)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    async with live.db.read() as s:
        problems = await rec_svc.verify_session(s, live.settings, live.session_id)
    assert any(files[0].key in p for p in problems), problems


async def test_recordings_are_listed_played_and_verified_over_http(live, media):
    import aiohttp

    from tests.api.helpers import PASSWORD
    mediator = Peer(live.url, await live.token("mediator"), media)
    await mediator.join()
    await mediator.publish()
    a = await _admitted(live, media, mediator, await live.token("party", party_id=live.party_ids[0]))
    try:
        await mediator.call("recording.start")
        await wait_for(lambda: a.events["recording.consent_request"], what="asked")
        await a.call("recording.consent", {"agree": True})
        await wait_for(lambda: mediator.state["recording"]["active"], what="recording on")
        await asyncio.sleep(2)
        assert (await mediator.call("recording.stop"))["ok"]
    finally:
        await a.close()
        await mediator.close()
    async with aiohttp.ClientSession() as http:
        async def login(username):
            async with http.post(live.url + "/api/v1/auth/login",
                                 json={"username": username, "password": PASSWORD}) as r:
                return {"Authorization": "Bearer " + (await r.json())["token"]}
        med, other = await login("mediator"), await login("mediator2")
        url = f"{live.url}/api/v1/sessions/{live.session_id}/recordings"
        async with http.get(url, headers=med) as r:
            body = await r.json()
        run = body["runs"][0]
        assert len(run["files"]) == 2 and any(e["action"] == "recording.consent" for e in body["timeline"])
        async with http.get(url, headers=other) as r:
            assert r.status == 403  # a mediator not assigned to this case
        f = run["files"][0]
        async with http.get(live.url + f["url"], headers={**med, "Range": "bytes=0-99"}) as r:
            assert r.status == 206 and len(await r.read()) == 100
        async with http.get(live.url + f["url"], headers=med) as r:
            import hashlib
            assert hashlib.sha256(await r.read()).hexdigest() == f["sha256"]
        async with http.post(f"{url}/verify", headers=med) as r:
            assert (await r.json()) == {"ok": True, "problems": []}
        async with http.get(f"{live.url}/staff/sessions/{live.session_id}/player", headers=med) as r:
            page = await r.text()
            assert r.status == 200 and 'id="player-data"' in page and f["sha256"] in page
