"""Export: one zip with a manifest, the evidence files, the audit entries with their hashes and the
chat transcripts; from the page's button (API) and from `mediation cases export`."""
from __future__ import annotations

import asyncio

import datetime as dt
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile

from sqlalchemy import select

from server.core import audit
from server.core.models import AuditEntry, ChatMessage, MediationSession
from tests.api.helpers import login, png_bytes, seed

from .test_integrity import _case_with_evidence


def _check_zip(data: bytes, number: str) -> dict:
    zf = zipfile.ZipFile(io.BytesIO(data))
    names = set(zf.namelist())
    manifest = json.loads(zf.read("manifest.json"))
    assert manifest["format"] == "mediation-case-export/1" and manifest["case"]["number"] == number
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) | {"manifest.json"} == names
    for path, f in listed.items():
        blob = zf.read(path)
        assert hashlib.sha256(blob).hexdigest() == f["sha256"] and len(blob) == f["size"], path
    evidence = [f for f in manifest["files"] if f["kind"] == "evidence"]
    assert len(evidence) == 2 and all(f["matches_record"] for f in evidence)
    png = next(f for f in evidence if f["path"].endswith("欠条.png"))
    assert zf.read(png["path"]) == png_bytes()
    entries = json.loads(zf.read("audit.json"))["entries"]
    steps = [e["action"] for e in entries if e["action"].startswith("case.")]
    assert steps[:3] == ["case.filed", "case.accept", "case.assign"]
    for e in entries:  # every hash recomputes from the exported content
        assert audit.entry_digest(seq=e["seq"], case_id=e["case_id"], session_id=e["session_id"],
                                  actor_type=e["actor_type"], actor_id=e["actor_id"], actor_name=e["actor_name"],
                                  action=e["action"], data=e["data"],
                                  created_at=dt.datetime.fromisoformat(e["created_at"]),
                                  prev_hash=e["prev_hash"]) == e["hash"]
    assert manifest["integrity_at_export"]["ok"] is True
    assert [e["action"] for e in manifest["timeline"] if e["action"].startswith("case.")][:3] == \
        ["case.filed", "case.accept", "case.assign"]
    return {"zip": zf, "manifest": manifest, "names": names}


async def test_export_zip_from_the_api_and_the_command_line(client, db, settings):
    w = await seed(db)
    filed = await _case_with_evidence(client, db, w)
    cid, number = filed["case"]["id"], filed["case"]["number"]
    async with db.session() as s:
        sess = MediationSession(case_id=cid, room_id="room-export", status="ended", created_by=w.users["mediator"])
        s.add(sess)
        await s.flush()
        s.add(ChatMessage(session_id=sess.id, participant_id="party-1", name="张伟", role="party", area="main",
                          text="同意调解方案"))
        sid = sess.id
    clerk = await login(client, "clerk")
    r = await client.get(f"/api/v1/cases/{cid}/export", headers=clerk)
    assert r.status == 200 and r.headers["Content-Type"] == "application/zip"
    data = await r.read()
    assert int(r.headers["Content-Length"]) == len(data)
    assert hashlib.sha256(data).hexdigest() == r.headers["X-Content-SHA256"]
    got = _check_zip(data, number)
    chat = json.loads(got["zip"].read(f"chat/session-{sid}.json"))
    assert [m["text"] for m in chat["messages"]] == ["同意调解方案"]
    async with db.read() as s:
        logged = (await s.execute(select(AuditEntry).where(AuditEntry.case_id == cid,
                                                           AuditEntry.action == "case.exported"))).scalars().all()
    assert len(logged) == 1 and logged[0].data["sha256"] == r.headers["X-Content-SHA256"]

    if not settings.database_url.startswith("sqlite"):
        return  # the command runs the same export service as the API (covered on both databases above)
    out = settings.data_dir / "exports" / "case.zip"
    env = {**os.environ, "DATABASE_URL": settings.database_url, "MEDIATION_DATA_DIR": str(settings.data_dir),
           "EVIDENCE_DIR": str(settings.evidence_dir), "SECRET_KEY": settings.secret_key}
    # Off the event loop: the app's workers in this process must finish their transactions meanwhile.
    p = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "server.cli", "cases", "export", number.lower(), "--out", str(out)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "100%" in p.stderr  # progress
    assert str(out) in p.stdout and hashlib.sha256(out.read_bytes()).hexdigest() in p.stdout
    _check_zip(out.read_bytes(), number)
    # Off the event loop: the app's workers in this process must finish their transactions meanwhile.
    p = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "server.cli", "cases", "export", "XX-2000-000001"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "No such case" in p.stderr
