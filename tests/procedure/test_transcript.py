"""The e-transcript in a live room: entries attributed to participants and seen in the same area,
confirmation by each party (or the recording standing in, with express consent), the final PDF
hashed into the audit chain and checked by the archive."""
from __future__ import annotations

import hashlib
import shutil
import subprocess

import aiohttp
from sqlalchemy import select

from server.core.models import AuditEntry, Transcript
from server.services.archive import records as archive
from server.services.procedure import transcript as transcript_svc

from tests.api.helpers import PASSWORD

from .conftest import wait_for


async def _ready(world, client, token):
    """Consent and notices, then join (identity checks are off in this test)."""
    ack = await client.join(token)
    while not ack["ok"]:
        code = ack["error"]["code"]
        if code == "consent_required":
            assert (await client.call("consent.online", {"agree": True}))["ok"]
        elif code == "notice_required":
            assert (await client.call("notice.ack", {"notices": [n["id"] for n in ack["error"]["notices"]]}))["ok"]
        else:
            raise AssertionError(ack)
        ack = await client.join(token)
    return ack["participant"]["id"]


async def test_transcript_is_kept_confirmed_and_hashed(world):
    world.settings.identity_check = False
    mediator = await world.client()
    a, b = await world.client(), await world.client()
    mid = await _ready(world, mediator, await world.token("mediator"))
    aid = await _ready(world, a, await world.token("party", party_id=world.applicant_id))
    bid = await _ready(world, b, await world.token("party", party_id=world.respondent_id))
    for pid in (aid, bid):
        assert (await mediator.call("lobby.admit", {"participant_id": pid}))["ok"]

    # Only the mediator writes; an entry names a participant of the room.
    assert (await a.call("transcript.add", {"text": "我来写", "speaker_id": aid}))["error"]["code"] == "forbidden"
    assert (await mediator.call("transcript.add", {"text": "x", "speaker_id": "nobody"}))["error"]["code"] == "not_found"
    ack = await mediator.call("transcript.add", {"text": "申请人陈述：包工头拖欠四个月工资共计两万三千元。", "speaker_id": aid})
    assert ack["ok"] and ack["entry"]["speaker_name"] == "张伟" and ack["entry"]["seq"] == 1
    await wait_for(lambda: a.events.get("transcript.entry") and b.events.get("transcript.entry"), what="both see it")

    # In a caucus the others do not see it: the respondent alone with the mediator.
    caucus = (await mediator.call("caucus.create", {"name": "背对背"}))["caucus_id"]
    assert (await mediator.call("participant.move", {"participant_id": bid, "to": caucus}))["ok"]
    assert (await mediator.call("participant.move", {"participant_id": mid, "to": caucus}))["ok"]
    ack = await mediator.call("transcript.add", {"text": "被申请人私下表示可以分期支付。", "speaker_id": bid})
    assert ack["entry"]["area"] == caucus
    await wait_for(lambda: len(b.events["transcript.entry"]) == 2, what="the caucus sees its entry")
    assert len(a.events["transcript.entry"]) == 1
    assert [e["seq"] for e in (await a.call("transcript.list"))["entries"]] == [1]
    for pid in (bid, mid):
        assert (await mediator.call("participant.move", {"participant_id": pid, "to": "main"}))["ok"]
    await mediator.call("transcript.add", {"text": "被申请人同意于本月底前一次性支付。", "speaker_id": bid})

    # Closed for confirmation: each party gets the main room's entries (not the caucus note).
    ack = await mediator.call("transcript.close", {"mode": "confirm"})
    assert ack["ok"] and [e["seq"] for e in ack["review"]["entries"]] == [1, 3]
    await wait_for(lambda: a.events.get("transcript.review") and b.events.get("transcript.review"), what="review")
    assert (await mediator.call("transcript.confirm", {"agree": True}))["error"]["code"] == "not_needed"
    first = await a.call("transcript.confirm", {"agree": True})
    assert first["ok"] and not first["finalized"] and first["waiting_for"] == [bid]
    disputed = await b.call("transcript.confirm", {"agree": False, "note": "金额应为两万元"})
    assert disputed["ok"] and not disputed["finalized"]
    # A correction reopens it; the confirmations so far no longer count.
    await mediator.call("transcript.add", {"text": "更正：双方确认金额为两万元。", "speaker_id": mid})
    review = (await mediator.call("transcript.close", {"mode": "confirm"}))["review"]
    assert review["revision"] == 1
    assert not (await a.call("transcript.confirm", {"agree": True}))["finalized"]
    done = await b.call("transcript.confirm", {"agree": True})
    assert done["finalized"] and done["pdf_sha256"]
    await wait_for(lambda: a.events.get("transcript.finalized"), what="the finalized push")
    assert (await mediator.call("transcript.add", {"text": "x", "speaker_id": mid}))["error"]["code"] == "transcript_final"

    async with world.db.read() as s:
        tr = await s.get(Transcript, world.session_id)
        logged = (await s.execute(select(AuditEntry).where(AuditEntry.action == "transcript.finalized"))).scalar_one()
        entries = (await s.execute(select(AuditEntry).where(AuditEntry.action == "transcript.entry"))).scalars().all()
    path = transcript_svc.pdf_path(world.settings.data_dir, tr)
    data = path.read_bytes()
    assert data.startswith(b"%PDF") and hashlib.sha256(data).hexdigest() == tr.pdf_sha256 == logged.data["pdf_sha256"]
    assert logged.data["confirmed_by"] == [aid, bid] and logged.data["revision"] == 1
    assert len(entries) == 4 and all(len(e.data["text_sha256"]) == 64 for e in entries)
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
        text = "".join(text.split())
        assert "调解笔录" in text and "两万元" in text and "张伟" in text and "分期" not in text

    # Staff read it and download the PDF; the archive checks it and notices an altered file.
    async with aiohttp.ClientSession() as http:
        r = await http.post(world.url + "/api/v1/auth/login", json={"username": "mediator", "password": PASSWORD})
        auth = {"Authorization": "Bearer " + (await r.json())["token"]}
        body = await (await http.get(world.url + f"/api/v1/sessions/{world.session_id}/transcript", headers=auth)).json()
        assert body["status"] == "final" and len(body["entries"]) == 4 and len(body["signoffs"]) == 4
        r = await http.get(world.url + f"/api/v1/sessions/{world.session_id}/transcript.pdf", headers=auth)
        assert r.status == 200 and r.headers["X-Content-SHA256"] == tr.pdf_sha256 and await r.read() == data
    async with world.db.read() as s:
        case = await s.get(archive.Case, world.case_id)
        report = await archive.run_checks(s, world.app["evidence_store"], case=case, settings=world.settings)
        assert next(r for r in report.results if r.name == "transcripts").ok
        path.write_bytes(data.replace(b"%PDF", b"%PDF ", 1))
        report = await archive.run_checks(s, world.app["evidence_store"], case=case, settings=world.settings)
    problems = next(r for r in report.results if r.name == "transcripts").problems
    assert [p.problem for p in problems] == ["hash_mismatch"]


async def test_the_recording_stands_in_only_with_every_partys_express_consent(world):
    world.settings.identity_check = False
    mediator, a, b = await world.client(), await world.client(), await world.client()
    await _ready(world, mediator, await world.token("mediator"))
    aid = await _ready(world, a, await world.token("party", party_id=world.applicant_id))
    bid = await _ready(world, b, await world.token("party", party_id=world.respondent_id))
    for pid in (aid, bid):
        await mediator.call("lobby.admit", {"participant_id": pid})
    await mediator.call("transcript.add", {"text": "双方就还款时间进行了协商。", "speaker_id": aid})
    assert (await mediator.call("transcript.close", {"mode": "recording"}))["error"]["code"] == "bad_request"
    ack = await mediator.call("transcript.close", {"mode": "recording", "facts": "被申请人欠申请人工资两万元。"})
    assert ack["ok"] and ack["review"]["mode"] == "recording"
    refused = await a.call("transcript.confirm", {"agree": True})
    assert refused["error"]["code"] == "recording_consent_required"
    assert not (await a.call("transcript.confirm", {"agree": True, "recording_consent": True}))["finalized"]
    assert (await b.call("transcript.confirm", {"agree": True, "recording_consent": True}))["finalized"]
    async with world.db.read() as s:
        tr = await s.get(Transcript, world.session_id)
        consents = [e.data["recording_consent"] for e in (await s.execute(
            select(AuditEntry).where(AuditEntry.action == "transcript.confirmed"))).scalars()]
    assert tr.mode == "recording" and tr.status == "final" and consents == [True, True]
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(transcript_svc.pdf_path(world.settings.data_dir, tr)), "-"],
                              capture_output=True, text=True, check=True).stdout
        text = "".join(text.split())  # lines wrap anywhere in Chinese
        assert "录音录像代替笔录" in text and "两万元" in text
