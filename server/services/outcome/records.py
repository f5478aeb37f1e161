"""What the outcome adds to the clerks' archive: the agreement and court submissions in a case's
record, and what followed it (the watched obligations with the parties' reports, the follow-up and
review tasks, the satisfaction ratings, the court's online reviews); the agreements' integrity check (text, signature images,
sealed PDF and its PAdES signature) and the signed PDF and court packages in the export.
Registered by server/system.py."""
from __future__ import annotations

import asyncio
import hashlib

from sqlalchemy import select

from server.core.models import Agreement, AuditEntry, Case, CourtSubmission
from server.infra import pdf
from server.infra.certs import load_identity
from server.services.archive import records as archive
from server.services.outcome import agreements as agr
from server.services.outcome import court as court_svc
from server.services.outcome import followup, performance, review, satisfaction


async def outcome_section(s, case):
    ag = await agr.get_for_case(s, case.id)
    if ag is None:
        return None
    sigs = await agr.signatures(s, ag.id)
    d = agr.view(ag, case, sigs)
    d.pop("content", None)
    return d

async def submissions_section(s, case):
    return [court_svc.submission_view(x, m, case) for x, m in await court_svc.list_submissions(s, case.id)]

async def reviews_section(s, case):
    return await review.case_views(s, case)


async def obligations_section(s, case):
    return await performance.case_views(s, case)


async def followups_section(s, case):
    return await followup.case_views(s, case)


async def ratings_section(s, case):
    return await satisfaction.case_views(s, case)


async def check_agreements(ctx: archive.CheckContext) -> archive.CheckOutcome:
    """Each agreement in effect: the stored PDF against its recorded SHA-256 and the one in the audit chain,
    its PAdES signature, the text against its hash, every signature image against its logged hash."""
    out = archive.CheckOutcome("agreements")
    q = select(Agreement).where(Agreement.status != "draft")
    if ctx.case is not None:
        q = q.where(Agreement.case_id == ctx.case.id)
    rows = list((await ctx.s.execute(q)).scalars().all())
    cfg = court_svc.OutcomeConfig.from_env(ctx.settings) if ctx.settings is not None else None
    roots = load_identity(ctx.settings.data_dir).trust_roots if ctx.settings is not None else None
    for ag in rows:
        number = (await ctx.s.get(Case, ag.case_id)).number
        item = f"agreement of {number}"
        ctx.say(item)
        out.checked += 1
        if ag.text_sha256 and agr.sha256_text(ag.text) != ag.text_sha256:
            out.problems.append(archive.Problem("agreements", item, "altered", "the agreement text does not match "
                                                "its fixed SHA-256", ag.text_sha256, agr.sha256_text(ag.text),
                                                ag.case_id))
        logged = {e.data.get("image_sha256") for e in (await ctx.s.execute(select(AuditEntry).where(
            AuditEntry.case_id == ag.case_id, AuditEntry.action == "agreement.signed"))).scalars()}
        for sig in await agr.signatures(ctx.s, ag.id):
            if hashlib.sha256(sig.image).hexdigest() != sig.image_sha256 or sig.image_sha256 not in logged:
                out.problems.append(archive.Problem("agreements", f"{item}: signature of {sig.name}",
                                                    "hash_mismatch", "the signature image is not the one logged",
                                                    sig.image_sha256, hashlib.sha256(sig.image).hexdigest(),
                                                    ag.case_id))
        if ag.status != "effective":
            continue
        sealed = [e.data.get("pdf_sha256") for e in (await ctx.s.execute(select(AuditEntry).where(
            AuditEntry.case_id == ag.case_id, AuditEntry.action == "agreement.sealed"))).scalars()]
        if ag.pdf_sha256 not in sealed:
            out.problems.append(archive.Problem("agreements", item, "not_in_audit", "the recorded PDF hash is not "
                                                "the one logged when it was sealed", ", ".join(map(str, sealed)),
                                                ag.pdf_sha256, ag.case_id))
        if cfg is None:
            out.note = "stored files not checked (no settings)"
            continue
        try:
            data = await asyncio.to_thread((cfg.agreements_dir / ag.pdf_key).read_bytes)
        except (OSError, TypeError):
            out.problems.append(archive.Problem("agreements", item, "missing", "the signed PDF is missing",
                                                ag.pdf_sha256, None, ag.case_id))
            continue
        actual = hashlib.sha256(data).hexdigest()
        if actual != ag.pdf_sha256:
            out.problems.append(archive.Problem("agreements", item, "hash_mismatch", "the stored PDF does not "
                                                "match its SHA-256 (file altered)", ag.pdf_sha256, actual,
                                                ag.case_id))
            continue
        check = await pdf.verify(data, roots)
        if not check.ok:
            out.problems.append(archive.Problem("agreements", item, "signature_invalid", check.error,
                                                None, None, ag.case_id))
    return out

async def check_rulings(ctx: archive.CheckContext) -> archive.CheckOutcome:
    """Each court ruling received (裁定书): the stored file against the SHA-256 recorded with the submission and
    the one the audit chain logged when it arrived."""
    out = archive.CheckOutcome("court_rulings")
    q = select(CourtSubmission).where(CourtSubmission.kind == "judicial_confirmation")
    if ctx.case is not None:
        q = q.where(CourtSubmission.case_id == ctx.case.id)
    cfg = court_svc.OutcomeConfig.from_env(ctx.settings) if ctx.settings is not None else None
    for sub in (await ctx.s.execute(q)).scalars():
        ruling = (sub.answer or {}).get("ruling")
        if not ruling:
            continue
        number = (await ctx.s.get(Case, sub.case_id)).number
        item = f"court ruling of {number}"
        ctx.say(item)
        out.checked += 1
        logged = [e.data.get("sha256") for e in (await ctx.s.execute(select(AuditEntry).where(
            AuditEntry.case_id == sub.case_id, AuditEntry.action == "court.ruling"))).scalars()]
        if ruling.get("sha256") not in logged:
            out.problems.append(archive.Problem("court_rulings", item, "not_in_audit", "the ruling's hash is not "
                                                "the one logged when it arrived", ", ".join(map(str, logged)),
                                                ruling.get("sha256"), sub.case_id))
        if cfg is None:
            out.note = "stored files not checked (no settings)"
            continue
        try:
            data = await asyncio.to_thread((cfg.agreements_dir / ruling["key"]).read_bytes)
        except (OSError, TypeError, KeyError):
            out.problems.append(archive.Problem("court_rulings", item, "missing", "the ruling's file is missing",
                                                ruling.get("sha256"), None, sub.case_id))
            continue
        actual = hashlib.sha256(data).hexdigest()
        if actual != ruling.get("sha256"):
            out.problems.append(archive.Problem("court_rulings", item, "hash_mismatch", "the stored ruling does not "
                                                "match its SHA-256 (file altered)", ruling.get("sha256"), actual,
                                                sub.case_id))
    return out


async def export_files(s, case, settings_):
    files = []
    ag = await agr.get_for_case(s, case.id)
    if ag is not None and ag.pdf_key and settings_ is not None:
        cfg = court_svc.OutcomeConfig.from_env(settings_)
        files.append(archive.ExportFile(f"outcome/{case.number}-agreement.pdf", "agreement",
                                        path=cfg.agreements_dir / ag.pdf_key, recorded_sha256=ag.pdf_sha256))
    for x, _m in await court_svc.list_submissions(s, case.id):
        if x.package:
            files.append(archive.ExportFile(f"outcome/{x.kind}-{x.key}.zip", "court_package", data=x.package,
                                            recorded_sha256=x.package_sha256))
        ruling = (x.answer or {}).get("ruling")
        if ruling and settings_ is not None:
            cfg = court_svc.OutcomeConfig.from_env(settings_)
            files.append(archive.ExportFile(f"outcome/{x.kind}-{x.key}-ruling.pdf", "court_ruling",
                                            path=cfg.agreements_dir / ruling["key"], recorded_sha256=ruling["sha256"]))
    return files


def register() -> None:
    archive.register_record_section("outcome", outcome_section)
    archive.register_record_section("submissions", submissions_section, [])
    archive.register_record_section("court_reviews", reviews_section, [])
    archive.register_record_section("obligations", obligations_section, [])
    archive.register_record_section("followups", followups_section, [])
    archive.register_record_section("ratings", ratings_section, [])
    archive.register_checker("agreements", check_agreements)
    archive.register_checker("court_rulings", check_rulings)
    archive.register_export_files("outcome", export_files)
