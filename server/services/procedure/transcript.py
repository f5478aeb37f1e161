"""The e-transcript (笔录) of a session (SPC Online Mediation Rules art. 22).

The mediator writes time-stamped entries in the room, each attributed to a participant; the
people in the same area (the main room, or one caucus) see it grow. At the end the mediator
closes it for review, in one of two modes:
- `confirm`: each party who took part confirms the transcript of the main room (caucus notes
  stay with their caucus and are not part of it);
- `recording`: with every party's express consent (recorded), the session's recording stands
  in for the transcript and only the undisputed facts the mediator wrote down are confirmed.
When the last party has confirmed, the transcript is rendered to a PDF (Noto Sans CJK, embedded),
kept under `$MEDIATION_DATA_DIR/transcripts/`, and its SHA-256 goes into the audit chain
(`transcript.finalized`). An entry added after closing reopens it (a new revision; earlier
confirmations no longer count). Each entry's text hash is logged as it is written.

One module (~440 lines): entries, review, sign-off and the PDF (with its font subset) are one document's life.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, StringConstraints, model_validator
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import audit
from server.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from server.core.i18n import translator
from server.core.models import AuditEntry, Case, MediationSession, Transcript, TranscriptEntry, TranscriptSignoff, utcnow
from server.core.schemas import Checked, Id
from server.services.procedure import deadlines
from server.infra.files import atomic_write
from server.services.archive import records as archive
from server.services.cases import view as view_case
from server.services.live import Pass
from server.services.procedure.rules import party_of_pass
from server.services.sessions import get_session

FONT_PATH = Path(os.environ.get("PDF_FONT_DIR", "/usr/share/fonts/opentype/noto")) / "NotoSansCJK-Regular.ttc"
FONT_INDEX = 2  # Noto Sans CJK SC in the collection
MAIN = "main"


class _In(Checked):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class EntryIn(_In):
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
    speaker_id: Annotated[str, StringConstraints(min_length=1, max_length=80)]


class EntryEditIn(_In):
    entry_id: Id
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
    speaker_id: Annotated[str, StringConstraints(min_length=1, max_length=80)] | None = None


class EntryRef(_In):
    entry_id: Id


class CloseIn(_In):
    mode: Literal["confirm", "recording"] = "confirm"
    facts: Annotated[str, StringConstraints(strip_whitespace=True, max_length=8000)] = ""

    @model_validator(mode="after")
    def _facts(self):
        if self.mode == "recording" and len(self.facts) < 2:
            raise ValueError("write down the undisputed facts the parties confirm")
        return self


class ConfirmIn(_In):
    agree: bool
    recording_consent: bool | None = None
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] = ""


async def _transcript(s: AsyncSession, session_id: int, case_id: int, *, create: bool = True,
                      lock: bool = False) -> Transcript | None:
    q = select(Transcript).where(Transcript.session_id == session_id)
    if lock:
        q = q.with_for_update()
    row = (await s.execute(q)).scalar_one_or_none()
    if row is None and create:
        row = Transcript(session_id=session_id, case_id=case_id, status="open", mode="confirm", facts="", revision=0)
        s.add(row)
        await s.flush()
    return row


def entry_json(e: TranscriptEntry) -> dict:
    return {"id": e.id, "seq": e.seq, "at": e.created_at.isoformat(), "area": e.area, "speaker_id": e.speaker_id,
            "speaker_name": e.speaker_name, "speaker_role": e.speaker_role, "text": e.text}


async def add_entry(s: AsyncSession, author: Pass, area: str, speaker: tuple[str, str, str], text: str) -> TranscriptEntry:
    """The mediator writes a statement; `speaker` is (participant id, name, role)."""
    if author.role != "mediator":
        raise Forbidden("Only the mediator keeps the transcript.")
    tr = await _transcript(s, author.session_id, author.case_id, lock=True)
    if tr.status == "final":
        raise Conflict("The transcript has been confirmed and is final.", code="transcript_final")
    if tr.status == "review" and area == MAIN:
        # A correction after closing: a new revision, the confirmations given so far no longer count.
        tr.status, tr.revision = "open", tr.revision + 1
        await audit.append(s, author.ref(), "transcript.reopened", case_id=author.case_id,
                           session_id=author.session_id, data={"revision": tr.revision})
    seq = (await s.execute(select(func.coalesce(func.max(TranscriptEntry.seq), 0))
                           .where(TranscriptEntry.session_id == author.session_id))).scalar_one() + 1
    e = TranscriptEntry(session_id=author.session_id, seq=seq, area=area, speaker_id=speaker[0],
                        speaker_name=speaker[1], speaker_role=speaker[2], text=text, author_id=author.participant_id)
    s.add(e)
    await s.flush()
    await audit.append(s, author.ref(), "transcript.entry", case_id=author.case_id, session_id=author.session_id,
                       data={"entry_id": e.id, "seq": seq, "area": area, "speaker_id": speaker[0],
                             "speaker": speaker[1], "text_sha256": hashlib.sha256(text.encode()).hexdigest()})
    return e


async def _own_entry(s: AsyncSession, author: Pass, area: str, entry_id: int) -> tuple[Transcript, TranscriptEntry]:
    """An entry the mediator may still change: of this session, of the area they are in, before closing."""
    if author.role != "mediator":
        raise Forbidden("Only the mediator keeps the transcript.")
    tr = await _transcript(s, author.session_id, author.case_id, lock=True)
    e = await s.get(TranscriptEntry, entry_id)
    if e is None or e.session_id != author.session_id:
        raise NotFound("No such transcript entry.")
    if e.area != area:
        raise Forbidden("This entry belongs to another area; change it from there.")
    if tr.status != "open":
        raise Conflict("The transcript is closed for review; add a correction as a new entry.",
                       code="transcript_closed")
    return tr, e


async def edit_entry(s: AsyncSession, author: Pass, area: str, entry_id: int, text: str,
                     speaker: tuple[str, str, str] | None = None) -> TranscriptEntry:
    """The mediator corrects an entry (its text, or whom it is attributed to); both texts' hashes are logged."""
    _tr, e = await _own_entry(s, author, area, entry_id)
    before = hashlib.sha256(e.text.encode()).hexdigest()
    e.text = text
    if speaker is not None:
        e.speaker_id, e.speaker_name, e.speaker_role = speaker
    await s.flush()
    await audit.append(s, author.ref(), "transcript.entry_edited", case_id=author.case_id, session_id=author.session_id,
                       data={"entry_id": e.id, "seq": e.seq, "area": area, "speaker_id": e.speaker_id,
                             "speaker": e.speaker_name, "text_sha256_before": before,
                             "text_sha256": hashlib.sha256(text.encode()).hexdigest()})
    return e


async def delete_entry(s: AsyncSession, author: Pass, area: str, entry_id: int) -> int:
    """The mediator takes an entry out; the audit log keeps its text's hash. Returns its seq."""
    _tr, e = await _own_entry(s, author, area, entry_id)
    data = {"entry_id": e.id, "seq": e.seq, "area": area, "speaker_id": e.speaker_id,
            "text_sha256": hashlib.sha256(e.text.encode()).hexdigest()}
    await s.delete(e)
    await s.flush()
    await audit.append(s, author.ref(), "transcript.entry_deleted", case_id=author.case_id,
                       session_id=author.session_id, data=data)
    return data["seq"]


async def entries(s: AsyncSession, session_id: int, area: str | None = None) -> list[TranscriptEntry]:
    q = select(TranscriptEntry).where(TranscriptEntry.session_id == session_id)
    if area is not None:
        q = q.where(TranscriptEntry.area == area)
    return list((await s.execute(q.order_by(TranscriptEntry.seq))).scalars().all())


def content_digest(tr: Transcript, rows: list[TranscriptEntry]) -> str:
    body = {"session_id": tr.session_id, "revision": tr.revision, "mode": tr.mode, "facts": tr.facts,
            "entries": [[e.seq, e.created_at.astimezone(dt.timezone.utc).isoformat(timespec="microseconds"),
                         e.speaker_id, e.speaker_name, e.text] for e in rows]}
    return hashlib.sha256(json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


async def parties_present(s: AsyncSession, session_id: int) -> dict[str, str]:
    """participant id -> name of the parties who joined this session (from the audit log)."""
    rows = (await s.execute(select(AuditEntry.data).where(AuditEntry.session_id == session_id,
                                                          AuditEntry.action == "participant.joined"))).scalars()
    out = {}
    for d in rows:
        if (d or {}).get("role") == "party":
            out[d["participant_id"]] = d.get("name", "")
    return out


async def close(s: AsyncSession, author: Pass, data: CloseIn) -> tuple[Transcript, list[TranscriptEntry]]:
    if author.role != "mediator":
        raise Forbidden("Only the mediator keeps the transcript.")
    tr = await _transcript(s, author.session_id, author.case_id, lock=True)
    if tr.status == "final":
        raise Conflict("The transcript has been confirmed and is final.", code="transcript_final")
    rows = await entries(s, author.session_id, MAIN)
    if not rows and data.mode == "confirm":
        raise ValidationFailed("The transcript has no entries yet.", code="transcript_empty")
    if not await parties_present(s, author.session_id):
        raise Conflict("No party has taken part in this session.", code="no_parties")
    if tr.status == "review":
        tr.revision += 1  # closing again (e.g. another mode): confirmations start over
    tr.status, tr.mode, tr.facts, tr.closed_at = "review", data.mode, data.facts, utcnow()
    tr.content_sha256 = content_digest(tr, rows)
    await audit.append(s, author.ref(), "transcript.closed", case_id=author.case_id, session_id=author.session_id,
                       data={"mode": tr.mode, "revision": tr.revision, "entries": len(rows),
                             "content_sha256": tr.content_sha256})
    return tr, rows


@dataclass
class ConfirmResult:
    transcript: Transcript
    waiting_for: list[str]
    finalized: bool


async def confirm(s: AsyncSession, p: Pass, data: ConfirmIn, *, data_dir: Path) -> ConfirmResult:
    if p.role != "party":
        raise Forbidden("Each party confirms the transcript.", code="not_needed")
    tr = await _transcript(s, p.session_id, p.case_id, create=False, lock=True)
    if tr is None or tr.status != "review":
        raise Conflict("The transcript is not open for confirmation.", code="transcript_not_in_review")
    if data.agree and tr.mode == "recording" and data.recording_consent is not True:
        raise ValidationFailed("Say expressly that the recording may stand in for the transcript.",
                               code="recording_consent_required", fields={"recording_consent": "required"})
    party = await party_of_pass(s, p)
    s.add(TranscriptSignoff(session_id=p.session_id, revision=tr.revision, participant_id=p.participant_id,
                            party_id=party.id if party else None, name=p.name, agree=data.agree,
                            recording_consent=data.recording_consent if tr.mode == "recording" else None,
                            note=data.note, content_sha256=tr.content_sha256))
    await s.flush()
    action = "transcript.confirmed" if data.agree else "transcript.disputed"
    await audit.append(s, p.ref(), action, case_id=p.case_id, session_id=p.session_id,
                       data={"participant_id": p.participant_id, "revision": tr.revision, "mode": tr.mode,
                             "recording_consent": data.recording_consent if tr.mode == "recording" else None,
                             "content_sha256": tr.content_sha256, "note": data.note})
    waiting = await _waiting(s, tr)
    if waiting or not data.agree:
        return ConfirmResult(tr, waiting, False)
    await finalize(s, tr, data_dir=data_dir, by=p.ref())
    return ConfirmResult(tr, [], True)


async def signoffs(s: AsyncSession, session_id: int, revision: int | None = None) -> list[TranscriptSignoff]:
    q = select(TranscriptSignoff).where(TranscriptSignoff.session_id == session_id)
    if revision is not None:
        q = q.where(TranscriptSignoff.revision == revision)
    return list((await s.execute(q.order_by(TranscriptSignoff.id))).scalars().all())


async def _waiting(s: AsyncSession, tr: Transcript) -> list[str]:
    present = await parties_present(s, tr.session_id)
    latest: dict[str, TranscriptSignoff] = {}
    for so in await signoffs(s, tr.session_id, tr.revision):
        latest[so.participant_id] = so
    return [pid for pid in present if not (pid in latest and latest[pid].agree)]


async def finalize(s: AsyncSession, tr: Transcript, *, data_dir: Path, by: audit.ActorRef) -> None:
    sess = await s.get(MediationSession, tr.session_id)
    case = await s.get(Case, tr.case_id)
    rows = await entries(s, tr.session_id, MAIN)
    sign = [so for so in await signoffs(s, tr.session_id, tr.revision) if so.agree]
    mediator = case.mediator.name if case.mediator else ""
    pdf = await asyncio.to_thread(render_pdf, case=case, session=sess, transcript=tr, rows=rows, signoffs=sign,
                                  mediator=mediator)
    digest = hashlib.sha256(pdf).hexdigest()
    key = f"{case.id}-{sess.id}-r{tr.revision}-{digest[:16]}.pdf"
    await asyncio.to_thread(atomic_write, Path(data_dir) / "transcripts" / key, pdf)
    tr.status, tr.finalized_at, tr.pdf_key, tr.pdf_sha256 = "final", utcnow(), key, digest
    await audit.append(s, by, "transcript.finalized", case_id=case.id, session_id=sess.id,
                       data={"revision": tr.revision, "mode": tr.mode, "content_sha256": tr.content_sha256,
                             "pdf": key, "pdf_sha256": digest, "size": len(pdf),
                             "confirmed_by": [so.participant_id for so in sign]})


def pdf_path(data_dir: Path, tr: Transcript) -> Path:
    return Path(data_dir) / "transcripts" / tr.pdf_key


async def view(s: AsyncSession, session_id: int) -> dict:
    sess = await s.get(MediationSession, session_id)
    if sess is None:
        raise NotFound("No such session.")
    tr = await _transcript(s, session_id, sess.case_id, create=False)
    rows = await entries(s, session_id)
    return {"session_id": session_id, "status": tr.status if tr else "open", "mode": tr.mode if tr else "confirm",
            "revision": tr.revision if tr else 0, "facts": tr.facts if tr else "",
            "content_sha256": tr.content_sha256 if tr else "", "pdf_sha256": tr.pdf_sha256 if tr else "",
            "finalized_at": tr.finalized_at.isoformat() if tr and tr.finalized_at else None,
            "entries": [entry_json(e) for e in rows],
            "signoffs": [{"participant_id": so.participant_id, "name": so.name, "revision": so.revision,
                          "agree": so.agree, "recording_consent": so.recording_consent, "note": so.note,
                          "at": so.created_at.isoformat()} for so in await signoffs(s, session_id)]}


# --- the PDF -----------------------------------------------------------------------------------------------------

_font_source = None


def _subset_font(text: str, unique_name: str) -> io.BytesIO:
    """Noto Sans CJK is CFF-flavoured, which reportlab cannot embed: subset it to the characters
    used and convert the outlines to TrueType (quadratic) in memory. The subset gets its own face
    name: reportlab reuses an earlier registered font of the same face name (with its glyphs)."""
    from fontTools.pens.cu2quPen import Cu2QuPen
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from fontTools.subset import Options, Subsetter
    from fontTools.ttLib import TTCollection, newTable

    font = TTCollection(str(FONT_PATH), lazy=True).fonts[FONT_INDEX]
    opts = Options()
    opts.name_IDs, opts.notdef_outline, opts.glyph_names, opts.layout_features, opts.hinting = ["*"], True, True, [], False
    sub = Subsetter(opts)
    sub.populate(text=text + " ?")
    sub.subset(font)
    order = font.getGlyphOrder()
    glyphs = font.getGlyphSet()
    glyf = newTable("glyf")
    glyf.glyphOrder, glyf.glyphs = order, {}
    for name in order:
        pen = TTGlyphPen(glyphs)
        glyphs[name].draw(Cu2QuPen(pen, 1.0, reverse_direction=True))
        glyf[name] = pen.glyph()
    font["glyf"], font["loca"] = glyf, newTable("loca")
    for tag in ("CFF ", "VORG"):
        if tag in font:
            del font[tag]
    maxp = newTable("maxp")
    maxp.tableVersion = 0x00010000
    for attr in ("maxZones", "maxTwilightPoints", "maxStorage", "maxFunctionDefs", "maxInstructionDefs",
                 "maxStackElements", "maxSizeOfInstructions", "maxComponentElements", "maxPoints", "maxContours",
                 "maxCompositePoints", "maxCompositeContours", "maxComponentDepth"):
        setattr(maxp, attr, 0)
    maxp.maxZones, maxp.numGlyphs = 1, len(order)
    font["maxp"] = maxp
    font["head"].indexToLocFormat, font["head"].glyphDataFormat = 0, 0
    post = font["post"]
    post.formatType, post.extraNames, post.mapping, post.glyphOrder = 2.0, [], {}, order
    font.sfntVersion = "\x00\x01\x00\x00"
    names = font["name"]
    names.names = [n for n in names.names if n.nameID not in (1, 3, 4, 6, 16, 17)]
    for nid in (1, 3, 4, 6):
        names.setName(unique_name, nid, 3, 1, 0x409)
    buf = io.BytesIO()
    font.save(buf)
    buf.seek(0)
    return buf


def render_pdf(*, case: Case, session: MediationSession, transcript: Transcript, rows: list[TranscriptEntry],
               signoffs: list[TranscriptSignoff], mediator: str) -> bytes:
    """A4, Chinese labels (the official language of the record), the font embedded (subset)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
    from xml.sax.saxutils import escape

    t = translator("zh-CN")
    tz = deadlines.tz()

    def at(v: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        return v.astimezone(tz).strftime(fmt) if v else ""

    lines: list[tuple[str, str]] = []  # (style, text)
    lines.append(("title", t("transcript.pdf.title")))
    meta = [(t("transcript.pdf.case"), f"{case.number} {case.title}"),
            (t("transcript.pdf.institution"), case.institution.name if case.institution else ""),
            (t("transcript.pdf.mediator"), mediator),
            (t("transcript.pdf.session"), f"#{session.id}  {at(session.started_at or session.scheduled_at)}"
                                          + (f" – {at(session.ended_at, '%H:%M:%S')}" if session.ended_at else "")),
            (t("transcript.pdf.revision"), str(transcript.revision + 1))]
    if transcript.mode == "recording":
        lines.append(("h", t("transcript.pdf.recording_mode")))
        lines.append(("p", transcript.facts))
        lines.append(("h", t("transcript.pdf.entries_reference")))
    else:
        lines.append(("h", t("transcript.pdf.entries")))
    for e in rows:
        role = t(f"jrole.{e.speaker_role}") if e.speaker_role and e.speaker_id != "parties" else ""
        who = f"{e.speaker_name}（{role}）" if role else e.speaker_name  # "parties": both parties, no role
        lines.append(("entry", f"[{at(e.created_at, '%H:%M:%S')}] {who}：{e.text}"))
    lines.append(("h", t("transcript.pdf.signoffs")))
    for so in signoffs:
        extra = t("transcript.pdf.recording_consent") if so.recording_consent else ""
        lines.append(("p", t("transcript.pdf.signoff_line").format(name=so.name, at=at(so.created_at), extra=extra)))
    lines.append(("small", t("transcript.pdf.digest").format(sha=transcript.content_sha256)))

    used = "".join(text for _, text in lines) + "".join(a + b for a, b in meta) + "0123456789:-–[]#（）：. "
    font_name = "NotoSansSC-" + hashlib.sha256(used.encode()).hexdigest()[:12]
    if font_name not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(font_name, _subset_font(used, font_name)))
    base = ParagraphStyle("base", fontName=font_name, fontSize=10.5, leading=16, wordWrap="CJK")
    styles = {
        "title": ParagraphStyle("title", parent=base, fontSize=18, leading=26, alignment=1, spaceAfter=8),
        "h": ParagraphStyle("h", parent=base, fontSize=12.5, leading=20, spaceBefore=10, spaceAfter=4),
        "p": base, "entry": ParagraphStyle("entry", parent=base, leftIndent=4 * mm, spaceAfter=2),
        "small": ParagraphStyle("small", parent=base, fontSize=7.5, leading=11, textColor=colors.grey, spaceBefore=12),
    }
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, leftMargin=20 * mm, rightMargin=20 * mm, topMargin=18 * mm,
                            bottomMargin=18 * mm, title=f"{t('transcript.pdf.title')} {case.number}",
                            author=case.institution.name if case.institution else "", creator="mediation",
                            invariant=1)
    story = [Paragraph(escape(lines[0][1]), styles["title"])]
    table = Table([[Paragraph(escape(k), base), Paragraph(escape(v), base)] for k, v in meta],
                  colWidths=[32 * mm, None])
    table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.4, colors.grey), ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    story += [table, Spacer(1, 4 * mm)]
    for style, text in lines[1:]:
        story.append(Paragraph(escape(text).replace("\n", "<br/>"), styles[style]))
    try:
        doc.build(story)
    finally:
        # Each document registers its own subset font; forget it so a long-running server does not grow.
        for registry in ("_fonts", "_dynFaceNames", "_typefaces"):
            getattr(pdfmetrics, registry, {}).pop(font_name, None)
    return out.getvalue()


# --- the archive: the transcript is part of the record, its PDF checked and exported -------------------------------------

def register_with_archive() -> None:
    """The transcript in a case's record, its PDF checked and exported (called by server/system.py)."""

    async def section(s: AsyncSession, case: Case) -> list[dict]:
        rows = (await s.execute(select(Transcript).where(Transcript.case_id == case.id)
                                .order_by(Transcript.session_id))).scalars().all()
        return [{"session_id": r.session_id, "status": r.status, "mode": r.mode, "revision": r.revision,
                 "pdf_sha256": r.pdf_sha256 or None, "finalized_at": r.finalized_at.isoformat() if r.finalized_at else None}
                for r in rows]

    async def check(ctx) -> "archive.CheckOutcome":
        out = archive.CheckOutcome("transcripts")
        q = select(Transcript).where(Transcript.status == "final")
        if ctx.case is not None:
            q = q.where(Transcript.case_id == ctx.case.id)
        data_dir = Path(getattr(ctx.settings, "data_dir", "var") or "var")
        for tr in (await ctx.s.execute(q)).scalars():
            out.checked += 1
            item = f"transcript of session {tr.session_id}"
            logged = (await ctx.s.execute(select(AuditEntry.data).where(
                AuditEntry.session_id == tr.session_id, AuditEntry.action == "transcript.finalized")
                .order_by(AuditEntry.seq.desc()).limit(1))).scalar_one_or_none() or {}
            path = pdf_path(data_dir, tr)
            if not path.exists():
                out.problems.append(archive.Problem("transcripts", item, "missing", "the PDF file is missing",
                                                    case_id=tr.case_id))
                continue
            actual = hashlib.sha256(path.read_bytes()).hexdigest()
            if actual != tr.pdf_sha256:
                out.problems.append(archive.Problem("transcripts", item, "hash_mismatch",
                                                    "the PDF does not match its SHA-256 (file altered)",
                                                    tr.pdf_sha256, actual, tr.case_id))
            if logged.get("pdf_sha256") != tr.pdf_sha256:
                out.problems.append(archive.Problem("transcripts", item, "not_in_audit",
                                                    "the recorded SHA-256 is not the one in the audit log",
                                                    logged.get("pdf_sha256"), tr.pdf_sha256, tr.case_id))
        return out

    async def files(s: AsyncSession, case: Case, settings) -> list:
        rows = (await s.execute(select(Transcript).where(Transcript.case_id == case.id, Transcript.status == "final"))
                ).scalars().all()
        data_dir = Path(getattr(settings, "data_dir", "var") or "var")
        return [archive.ExportFile(f"transcripts/{r.pdf_key}", "transcript", path=pdf_path(data_dir, r),
                                   recorded_sha256=r.pdf_sha256) for r in rows]

    archive.register_record_section("transcripts", section, [])
    archive.register_checker("transcripts", check)
    archive.register_export_files("transcripts", files)


async def final_pdf_of_session(s: AsyncSession, session_id: int, data_dir: Path) -> tuple[Path, str]:
    """The final PDF of a session for someone the caller has checked (a join link of it): (path, SHA-256)."""
    tr = await s.get(Transcript, session_id)
    if tr is None or tr.status != "final":
        raise NotFound("This transcript is not final yet.")
    path = pdf_path(data_dir, tr)
    if not path.exists():
        raise NotFound("The transcript file is missing.")
    return path, tr.pdf_sha256


async def final_pdf(s: AsyncSession, actor, session_id: int, data_dir: Path) -> tuple[Path, str, str]:
    """The final transcript's PDF of a session for staff who may see the case: (path, case number, SHA-256)."""
    sess = await get_session(s, session_id)
    case = await view_case(s, actor, sess.case_id)
    tr = await s.get(Transcript, session_id)
    if tr is None or tr.status != "final":
        raise NotFound("This transcript is not final yet.")
    path = pdf_path(data_dir, tr)
    if not path.exists():
        raise NotFound("The transcript file is missing.")
    return path, case.number, tr.pdf_sha256
