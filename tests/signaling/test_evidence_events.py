"""Evidence in the live room over real socket.io clients and HTTP (signaling/evidence_events.py):
presenting to one area only, each viewer's own watermarked copy, paging and the pointer, the
record of who saw what for how long; files added live through the filing's checks and the
mediator's review; and every refusal changing nothing."""
from __future__ import annotations

import asyncio
import hashlib
import io

import aiohttp
import pytest
from PIL import Image
from sqlalchemy import func, select

from server.core.models import AuditEntry, Evidence
from server.core.schemas import CaseIn
from server.services import cases as case_svc
from tests.api.helpers import case_body
from tests.rooms.clients import wait_for
from tests.support.cli import run_cli_async

from .peer import Peer

EXTRA = ("evidence.shown", "evidence.stopped", "evidence.pointer", "evidence.submitted", "evidence.reviewed",
         "evidence.allowed")


def png(color=(30, 120, 200), size=(640, 480)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def pdf(pages: int = 2) -> bytes:
    buf = io.BytesIO()
    imgs = [Image.new("RGB", (595, 842), (255, 255 - 40 * i, 255)) for i in range(pages)]
    imgs[0].save(buf, "PDF", save_all=True, append_images=imgs[1:])
    return buf.getvalue()


async def add_filed(live, case_id: int, name: str, data: bytes, mime: str) -> int:
    key, digest = await live.app["evidence_store"].put(data, case_svc.ALLOWED_EVIDENCE[mime])
    async with live.db.session() as s:
        e = Evidence(case_id=case_id, filename=name, content_type=mime, size=len(data), sha256=digest, storage_key=key)
        s.add(e)
        await s.flush()
        return e.id


def peer(live, token) -> Peer:
    p = Peer(live.url, token)
    for name in EXTRA:
        p.sio.on(name, p._recorder(name))
    return p


async def enter(live, mediator, token) -> Peer:
    p = peer(live, token)
    ack = await p.join()
    assert ack["ok"], ack
    assert (await mediator.call("lobby.admit", {"participant_id": p.me["id"]}))["ok"]
    return p


async def fetch(live, url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http:
        async with http.get(live.url + url) as r:
            return r.status, await r.read()


async def upload(live, token: str | None, data: bytes, name: str = "photo.jpg") -> tuple[int, dict]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name, content_type="application/octet-stream")
    headers = {"X-Join-Token": token} if token else {}
    async with aiohttp.ClientSession() as http:
        async with http.post(live.url + "/api/v1/room/evidence", data=form, headers=headers) as r:
            return r.status, await r.json()


async def counts(live) -> tuple[int, int]:
    async with live.db.read() as s:
        return ((await s.execute(select(func.count()).select_from(AuditEntry))).scalar_one(),
                (await s.execute(select(func.count()).select_from(Evidence))).scalar_one())


async def audit(live, action: str) -> list[dict]:
    async with live.db.read() as s:
        rows = (await s.execute(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))).scalars()
        return [r.data for r in rows]


async def test_presented_to_one_area_watermarked_per_viewer_and_recorded(live):
    doc = await add_filed(live, live.case_id, "租赁合同.pdf", pdf(2), "application/pdf")
    mediator = peer(live, await live.token("mediator"))
    assert (await mediator.join())["ok"]
    a = await enter(live, mediator, await live.token("party", party_id=live.party_ids[0]))
    b = await enter(live, mediator, await live.token("party", party_id=live.party_ids[1]))
    ids = {x: x.me["id"] for x in (mediator, a, b)}
    try:
        listed = await a.call("evidence.list")
        assert listed["ok"] and [e["id"] for e in listed["evidence"]] == [doc] and not listed["may_present"]
        ack = await mediator.call("evidence.present", {"evidence_id": doc, "page": 1})
        assert ack["ok"], ack
        assert ack["showing"]["pages"] == 2
        await wait_for(lambda: a.events["evidence.shown"] and b.events["evidence.shown"], what="both parties see it")
        ua, ub = a.events["evidence.shown"][-1]["url"], b.events["evidence.shown"][-1]["url"]
        assert ua != ub
        (sa, ja), (sb, jb) = await fetch(live, ua), await fetch(live, ub)
        assert sa == sb == 200 and ja[:3] == jb[:3] == b"\xff\xd8\xff" and ja != jb  # a JPEG each, not the same
        # A's link with B's name on it is not A's link.
        assert (await fetch(live, ua.replace(f"pid={ids[a]}", f"pid={ids[b]}")))[0] == 403
        # The pointer and the page reach the others; a page out of range changes nothing.
        assert (await mediator.call("evidence.pointer", {"x": 0.25, "y": 0.75}))["ok"]
        await wait_for(lambda: a.events["evidence.pointer"] and b.events["evidence.pointer"], what="pointer")
        assert a.events["evidence.pointer"][-1]["x"] == 0.25
        assert (await a.call("evidence.pointer", {"x": 0.5, "y": 0.5}))["error"]["code"] == "forbidden"
        assert (await a.call("evidence.page", {"page": 2}))["error"]["code"] == "forbidden"
        before = await counts(live)
        bad = await mediator.call("evidence.page", {"page": 3})
        assert bad["error"]["code"] == "validation_failed" and bad["error"]["fields"] == {"page": "out_of_range"}
        assert await counts(live) == before
        assert (await mediator.call("evidence.page", {"page": 2, "zoom": 2}))["ok"]
        await wait_for(lambda: a.events["evidence.shown"][-1]["page"] == 2, what="page 2")
        assert a.events["evidence.shown"][-1]["zoom"] == 2
        assert (await fetch(live, ua))[0] == 404  # page 1 is no longer shown
        ua = a.events["evidence.shown"][-1]["url"]
        assert (await fetch(live, ua))[0] == 200
        # B moves into a caucus: B stops seeing it, and B's link stops working.
        ub = b.events["evidence.shown"][-1]["url"]
        caucus = (await mediator.call("caucus.create", {"name": "与被申请人"}))["caucus_id"]
        assert (await mediator.call("participant.move", {"participant_id": ids[b], "to": caucus}))["ok"]
        await wait_for(lambda: b.events["evidence.stopped"], what="b stops seeing it")
        assert (await fetch(live, ub))[0] == 404
        # Back in main, B sees it again.
        n = len(b.events["evidence.shown"])
        assert (await mediator.call("participant.move", {"participant_id": ids[b], "to": "main"}))["ok"]
        await wait_for(lambda: len(b.events["evidence.shown"]) > n, what="b sees it again")
        assert (await mediator.call("evidence.stop"))["ok"]
        await wait_for(lambda: len(a.events["evidence.stopped"]) == 1, what="a sees the stop")
        assert (await fetch(live, ua))[0] == 404
    finally:
        for x in (mediator, a, b):
            await x.close()
    presented = await audit(live, "evidence.presented")
    assert presented and presented[0]["evidence_id"] == doc and presented[0]["area"] == "main"
    assert [d["page"] for d in await audit(live, "evidence.paged")] == [2]
    stopped = (await audit(live, "evidence.stopped"))[-1]
    assert stopped["reason"] == "stopped" and stopped["pages"] == [1, 2] and stopped["seconds"] >= 0
    assert {v["participant_id"] for v in stopped["viewers"]} == set(ids.values())


async def test_refusals_change_nothing(live):
    doc = await add_filed(live, live.case_id, "照片.png", png(), "image/png")
    song = await add_filed(live, live.case_id, "录音.mp3", b"ID3" + b"\0" * 64, "audio/mpeg")
    async with live.db.session() as s:
        this = await case_svc.get_case(s, live.case_id)
        other, _ = await case_svc.file_case(s, live.app["evidence_store"], CaseIn.model_validate(case_body(
            this.institution_id)), [case_svc.Upload("别的案件.png", png((1, 2, 3)))], max_bytes=10 ** 7, max_files=5)
        other_doc = other.evidence[0].id
    mediator = peer(live, await live.token("mediator"))
    assert (await mediator.join())["ok"]
    a = await enter(live, mediator, await live.token("party", party_id=live.party_ids[0]))
    waiting = peer(live, await live.token("party", party_id=live.party_ids[1]))
    assert (await waiting.join())["ok"]
    try:
        before = await counts(live)
        assert (await mediator.call("evidence.present", {"evidence_id": other_doc}))["error"]["code"] == "not_found"
        assert (await mediator.call("evidence.present", {"evidence_id": doc, "page": 2}))["error"]["code"] == \
            "validation_failed"
        assert (await mediator.call("evidence.present", {"evidence_id": song}))["error"]["code"] == "validation_failed"
        assert (await a.call("evidence.present", {"evidence_id": doc}))["error"]["code"] == "forbidden"
        assert (await waiting.call("evidence.present", {"evidence_id": doc}))["error"]["code"] == "in_lobby"
        assert (await waiting.call("evidence.list"))["error"]["code"] == "in_lobby"
        assert (await a.call("evidence.allow", {"participant_id": a.me["id"], "allowed": True}))["error"]["code"] == \
            "forbidden"
        assert (await mediator.call("evidence.stop"))["error"]["code"] == "not_found"
        assert (await mediator.call("evidence.review", {"evidence_id": doc, "accept": True}))["error"]["code"] == \
            "bad_state"
        assert (await mediator.call("evidence.present", {"evidence_id": doc, "page": 0}))["error"]["code"] == \
            "bad_request"
        assert await counts(live) == before
        assert not live.app["hub"].evidence.desk(live.app["hub"].rooms[live.room_id]).shows
        # Allowed, the party presents in its own area only: a caucus with the mediator.
        assert (await mediator.call("evidence.allow", {"participant_id": a.me["id"], "allowed": True}))["ok"]
        await wait_for(lambda: a.events["evidence.allowed"], what="a is told")
        caucus = (await mediator.call("caucus.create", {"name": "背对背"}))["caucus_id"]
        assert (await mediator.call("participant.move", {"participant_id": a.me["id"], "to": caucus}))["ok"]
        assert (await a.call("evidence.present", {"evidence_id": doc}))["ok"]
        await asyncio.sleep(0.3)
        assert a.events["evidence.shown"] and not mediator.events["evidence.shown"]  # the mediator is in main
        # Revoking the grant ends the party's presentation.
        assert (await mediator.call("evidence.allow", {"participant_id": a.me["id"], "allowed": False}))["ok"]
        await wait_for(lambda: a.events["evidence.stopped"], what="a's presentation ends")
        assert (await a.call("evidence.present", {"evidence_id": doc}))["error"]["code"] == "forbidden"
    finally:
        for x in (mediator, a, waiting):
            await x.close()


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
async def test_evidence_added_live_checked_reviewed_and_presented(live):
    mediator = peer(live, await live.token("mediator"))
    assert (await mediator.join())["ok"]
    a_token = await live.token("party", party_id=live.party_ids[0])
    a = await enter(live, mediator, a_token)
    lobby_token = await live.token("party", party_id=live.party_ids[1])
    waiting = peer(live, lobby_token)
    assert (await waiting.join())["ok"]
    photo = png((200, 50, 50))
    try:
        before = await counts(live)
        # Refused: no token, the lobby, a forbidden type, an oversized file; nothing is stored.
        assert (await upload(live, None, photo))[0] == 401
        status, body = await upload(live, lobby_token, photo)
        assert status == 403 and body["error"]["code"] == "in_lobby"
        status, body = await upload(live, a_token, b"#!/bin/sh\necho hello\n", "x.sh")
        assert status == 422 and body["error"]["fields"] == {"evidence": "file_type_not_allowed"}
        status, body = await upload(live, a_token, b"\x89PNG" + b"\0" * (live.settings.max_evidence_bytes + 10))
        assert status == 413 and body["error"]["code"] == "too_large"
        assert await counts(live) == before
        # Accepted: in the case's evidence with its hash, marked as added in this session.
        status, body = await upload(live, a_token, photo, "现场照片.png")
        assert status == 201, body
        item = body["evidence"]
        assert item["sha256"] == hashlib.sha256(photo).hexdigest() and item["review"] == "pending"
        assert item["in_session"] and item["session_id"] == live.session_id and item["submitted_by"] == a.me["id"]
        await wait_for(lambda: mediator.events["evidence.submitted"], what="the mediator sees it arrive")
        assert mediator.events["evidence.submitted"][0]["evidence"]["id"] == item["id"]
        stored = await live.app["evidence_store"].get(
            (await _row(live, item["id"])).storage_key)
        assert hashlib.sha256(stored).hexdigest() == item["sha256"]
        # Not yet accepted: not presentable. Accepted: presented.
        assert (await mediator.call("evidence.present", {"evidence_id": item["id"]}))["error"]["code"] == "bad_state"
        # Until accepted, only the mediator and the submitter see it listed.
        assert (await mediator.call("lobby.admit", {"participant_id": waiting.me["id"]}))["ok"]
        assert [e["id"] for e in (await a.call("evidence.list"))["evidence"]] == [item["id"]]
        assert [e["id"] for e in (await mediator.call("evidence.list"))["evidence"]] == [item["id"]]
        assert (await waiting.call("evidence.list"))["evidence"] == []
        assert (await a.call("evidence.review", {"evidence_id": item["id"], "accept": True}))["error"]["code"] == \
            "forbidden"
        ack = await mediator.call("evidence.review", {"evidence_id": item["id"], "accept": True})
        assert ack["ok"] and ack["evidence"]["review"] == "accepted"
        await wait_for(lambda: a.events["evidence.reviewed"], what="the submitter is told")
        assert (await mediator.call("evidence.review", {"evidence_id": item["id"], "accept": False}))["error"][
            "code"] == "bad_state"
        assert [e["id"] for e in (await waiting.call("evidence.list"))["evidence"]] == [item["id"]]
        assert (await mediator.call("evidence.present", {"evidence_id": item["id"]}))["ok"]
        await wait_for(lambda: a.events["evidence.shown"], what="a sees the photo")
        assert (await fetch(live, a.events["evidence.shown"][-1]["url"]))[0] == 200
        # A rejected one stays in the record and cannot be presented.
        status, body = await upload(live, a_token, png((0, 0, 0)), "模糊.png")
        rejected = body["evidence"]["id"]
        assert (await mediator.call("evidence.review", {"evidence_id": rejected, "accept": False}))["ok"]
        assert (await mediator.call("evidence.present", {"evidence_id": rejected}))["error"]["code"] == "bad_state"
        assert (await _row(live, rejected)).review == "rejected"
    finally:
        for x in (mediator, a, waiting):
            await x.close()
    submitted = await audit(live, "evidence.submitted")
    assert [d["sha256"] for d in submitted][0] == hashlib.sha256(photo).hexdigest()
    assert [d["decision"] for d in await audit(live, "evidence.reviewed")] == ["accepted", "rejected"]
    # The integrity check knows files added in a session by their own entry, and finds an altered row.
    r = await run_cli_async(["audit", "verify"], live.settings)
    assert r.returncode == 0, r.stdout + r.stderr
    async with live.db.session() as s:
        (await s.get(Evidence, item["id"])).sha256 = "0" * 64
    r = await run_cli_async(["audit", "verify"], live.settings)
    assert r.returncode != 0 and "not_in_audit" in r.stdout + r.stderr, r.stdout + r.stderr


async def _row(live, evidence_id: int) -> Evidence:
    async with live.db.read() as s:
        return await s.get(Evidence, evidence_id)
