"""Integrity: an altered audit row, an altered evidence file, an altered case row and an altered stored
document (the agreement module's PDF, stood in for by a registered checker) are each reported; the
`mediation audit verify` command says the same."""
from __future__ import annotations

import asyncio

import hashlib
import json

import aiohttp
from sqlalchemy import select, update

from server.core.models import AuditEntry, Case, Evidence
from server.services.archive import records as archive_svc
from tests.api.helpers import case_body, login, png_bytes, seed
from tests.support.cli import run_cli

MINE = {"audit_chain", "evidence", "case_state", "agreement"}


async def _case_with_evidence(client, db, w) -> dict:
    form = aiohttp.FormData()
    form.add_field("case", json.dumps(case_body(w.inst_a)), content_type="application/json")
    form.add_field("evidence", png_bytes(), filename="欠条.png", content_type="image/png")
    form.add_field("evidence", b"%PDF-1.4\n% receipt\n" + b"0" * 200 + b"\n%%EOF\n", filename="收据.pdf",
                   content_type="application/pdf")
    r = await client.post("/api/v1/cases", data=form)
    assert r.status == 201, await r.text()
    filed = await r.json()
    intake = await login(client, "intake")
    cid = filed["case"]["id"]
    assert (await client.post(f"/api/v1/cases/{cid}/accept", headers=intake)).status == 200
    r = await client.post(f"/api/v1/cases/{cid}/assign", headers=intake, json={"mediator_id": w.users["mediator"]})
    assert r.status == 200
    return filed


_cli = run_cli


async def test_each_alteration_is_reported(client, db, settings, tmp_path):
    w = await seed(db)
    filed = await _case_with_evidence(client, db, w)
    cid, number = filed["case"]["id"], filed["case"]["number"]
    clerk = await login(client, "clerk")

    # The agreement module (not built yet) will register a check of its signed PDF; a stored file stands in.
    pdf = tmp_path / "agreement.pdf"
    pdf.write_bytes(b"%PDF-1.7 signed agreement of " + number.encode())
    recorded = hashlib.sha256(pdf.read_bytes()).hexdigest()

    async def agreement_check(ctx):
        out = archive_svc.CheckOutcome("agreement")
        if ctx.case is None or ctx.case.id == cid:
            out.checked = 1
            actual = hashlib.sha256(pdf.read_bytes()).hexdigest()
            if actual != recorded:
                out.problems.append(archive_svc.Problem("agreement", "agreement.pdf", "signature_invalid",
                                                        "the signed PDF does not match its signature", recorded,
                                                        actual, cid))
        return out

    archive_svc.register_checker("agreement", agreement_check)
    try:
        async with db.read() as s:  # the entries the check will see (it logs itself afterwards)
            n_entries = len((await s.execute(select(AuditEntry.id).where(AuditEntry.case_id == cid))).all())
        r = await client.get(f"/api/v1/cases/{cid}/integrity", headers=clerk)
        report = await r.json()
        assert r.status == 200 and report["ok"] is True, report
        names = [c["name"] for c in report["checks"]]  # other modules may have registered theirs too
        assert names[:3] == ["audit_chain", "evidence", "case_state"] and names[-1] == "agreement"
        assert n_entries >= 3  # filed, accepted, assigned (and whatever other modules log with them)
        assert {c["name"]: c["checked"] for c in report["checks"] if c["name"] in MINE} == {
            "audit_chain": n_entries, "evidence": 2, "case_state": 1, "agreement": 1}

        async with db.session() as s:
            accept = (await s.execute(select(AuditEntry).where(AuditEntry.case_id == cid,
                                                               AuditEntry.action == "case.accept"))).scalar_one()
            await s.execute(update(AuditEntry).where(AuditEntry.id == accept.id).values(actor_name="someone else"))
            ev = (await s.execute(select(Evidence).where(Evidence.case_id == cid).order_by(Evidence.id))).scalars().all()
            await s.execute(update(Case).where(Case.id == cid).values(status="settled"))
            # The second file's recorded hash is rewritten to hide a swap: the filing entry still knows better.
            await s.execute(update(Evidence).where(Evidence.id == ev[1].id).values(sha256="f" * 64))
        store = client.server.app["evidence_store"]
        path = store._path(ev[0].storage_key)
        path.write_bytes(path.read_bytes() + b"tampered")
        pdf.write_bytes(pdf.read_bytes() + b" (edited)")

        r = await client.get(f"/api/v1/cases/{cid}/integrity", headers=clerk)
        report = await r.json()
        assert report["ok"] is False
        found = {(p["check"], p["item"], p["problem"]) for c in report["checks"] for p in c["problems"]
                 if c["name"] in MINE}
        assert found == {
            ("audit_chain", f"audit entry {accept.seq} (case.accept)", "altered"),
            ("evidence", f"evidence {ev[0].id} (欠条.png)", "hash_mismatch"),
            ("evidence", f"evidence {ev[1].id} (收据.pdf)", "hash_mismatch"),
            ("evidence", f"evidence {ev[1].id} (收据.pdf)", "not_in_audit"),
            ("case_state", f"case {number}: status", "differs_from_audit"),
            ("agreement", "agreement.pdf", "signature_invalid"),
        }, found
        bad = next(p for c in report["checks"] for p in c["problems"] if p["item"].startswith(f"evidence {ev[0].id}"))
        assert bad["expected"] == ev[0].sha256 and bad["actual"] == hashlib.sha256(path.read_bytes()).hexdigest()

        # The page says the same, in words.
        html = await (await client.get(f"/archive/cases/{cid}/verify", headers=clerk)).text()
        assert 'data-ok="false"' in html and "文件被改动" in html and "记录被改动" in html
    finally:
        archive_svc.unregister_checker("agreement")

    # Each check was itself logged.
    async with db.read() as s:
        logged = (await s.execute(select(AuditEntry.data).where(AuditEntry.case_id == cid,
                                                                AuditEntry.action == "case.verified")
                                  .order_by(AuditEntry.seq))).scalars().all()
    assert [d["ok"] for d in logged] == [True, False, False]

    # The command line: the whole archive, and one case; exit code 1 and each mismatch named (on one database:
    # the command runs the same services the API does, which the API part above covers on both).
    if not settings.database_url.startswith("sqlite"):
        return
    r = await asyncio.to_thread(_cli, ["audit", "verify"], settings)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"audit entry {accept.seq}" in r.stdout and "altered" in r.stdout
    assert f"evidence {ev[0].id}" in r.stdout and "hash_mismatch" in r.stdout
    assert "status" in r.stdout and "problem(s)" in r.stdout
    r = await asyncio.to_thread(_cli, ["audit", "verify", "--case", number, "--json"], settings)
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert report["scope"] == "case" and not report["ok"]
    assert len([p for c in report["checks"] for p in c["problems"] if c["name"] in MINE]) == 5
    assert (await asyncio.to_thread(_cli, ["audit", "verify", "--case", "XX-2000-000001"], settings)).returncode == 2
