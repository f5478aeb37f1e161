"""PDF documents of the outcome: the settlement agreement, the court applications, and their PAdES signature.

Rendering uses fpdf2 with Noto CJK (Debian's fonts-noto-cjk: Serif SC for the body, Sans SC
Bold for headings), embedded as subsets. Chinese lines are broken by character with the usual
rules (避头尾: no closing punctuation at the start of a line, no opening one at its end) and
Latin words or numbers are kept whole.

Signing: pyHanko, PAdES baseline (ETSI.CAdES.detached, SHA-256) as the institution, with an RFC
3161 timestamp when a TSA URL is configured. Verification: pyHanko's validator against the
configured trust roots; a file passes only when every signature is intact, valid, trusted and
covers the entire file.

One module (~440 lines): the agreement's and court applications' layout share the font and page machinery and the PAdES signing.
"""
from __future__ import annotations

import asyncio
import hashlib
import datetime as dt
import io
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

logging.getLogger("pyhanko").setLevel(logging.ERROR)  # path-validation noise; results are returned
FONT_DIR = Path(os.environ.get("PDF_FONT_DIR", "/usr/share/fonts/opentype/noto"))
BODY_FONT = ("NotoSerifCJK-Regular.ttc", 2)  # index 2: Simplified Chinese
HEAD_FONT = ("NotoSansCJK-Bold.ttc", 2)
FALLBACK_BODY = ("NotoSansCJK-Regular.ttc", 2)

NO_LINE_START = set("，。、；：？！）》」』】〕〉”’…—·%‰,.;:?!)]}%、·")
NO_LINE_END = set("（《「『【〔〈“‘([{")
SEAL_RED = (200, 20, 20)


class PdfError(RuntimeError):
    pass


# --- rendering ------------------------------------------------------------------------------------

@dataclass
class SignatureRow:
    name: str
    role: str            # shown as is (already translated)
    signed_at: str       # shown as is
    method: str          # shown as is
    image: bytes | None = None


@dataclass
class Section:
    heading: str = ""
    paragraphs: list[str] = field(default_factory=list)


@dataclass
class Document:
    title: str
    meta: list[tuple[str, str]] = field(default_factory=list)   # label, value under the title
    sections: list[Section] = field(default_factory=list)
    signatures: list[SignatureRow] = field(default_factory=list)
    signature_headers: tuple[str, str, str, str, str] = ("签署人", "身份", "签名", "签署时间", "身份核验")
    signature_title: str = "各方签署"
    seal_name: str = ""           # institution name around the seal; empty: no seal
    seal_caption: str = ""        # e.g. "调解组织（盖章）"
    seal_date: str = ""
    test_material: bool = False   # prints a TEST ONLY mark on the seal and every page
    footer_note: str = ""
    keywords: list[str] = field(default_factory=list)
    subject: str = ""
    author: str = ""


def _font_path(name: str) -> Path:
    path = FONT_DIR / name
    if not path.exists():
        raise PdfError(f"Font {path} is missing: install Debian's fonts-noto-cjk (or set PDF_FONT_DIR).")
    return path


def _is_word_char(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c in "-_.,@/:+%*")


def _tokens(text: str) -> list[str]:
    """Break units: a run of Latin letters/digits stays together; every CJK character stands alone."""
    out: list[str] = []
    buf = ""
    for c in text:
        if _is_word_char(c):
            buf += c
            continue
        if buf:
            out.append(buf)
            buf = ""
        out.append(c)
    if buf:
        out.append(buf)
    return out


def wrap(measure, text: str, width: float) -> list[str]:
    """Lines of at most `width` (by `measure`), with 避头尾. A closing mark may hang past the edge."""
    lines: list[str] = []
    for para in text.split("\n"):
        tokens = _tokens(para)
        line = ""
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if measure(line + tok) <= width or not line:
                if not line and measure(tok) > width:
                    # A word longer than the line: cut it by character.
                    for c in tok:
                        if line and measure(line + c) > width:
                            lines.append(line)
                            line = ""
                        line += c
                    i += 1
                    continue
                line += tok
                i += 1
                continue
            if tok in NO_LINE_START:
                line += tok  # hanging punctuation: stays with the line before
                i += 1
                continue
            # An opening mark does not end a line: carry it over.
            carry = ""
            while line and line[-1] in NO_LINE_END:
                carry = line[-1] + carry
                line = line[:-1]
            lines.append(line.rstrip(" "))
            line = carry
            if tok == " ":
                i += 1
        lines.append(line.rstrip(" "))
    return lines


def _make_pdf(doc: Document):
    from fpdf import FPDF

    test = doc.test_material
    footer_note = doc.footer_note

    class Pdf(FPDF):
        def footer(self):  # noqa: D401 - fpdf2 hook
            self.set_y(-14)
            self.set_font("body", size=8)
            self.set_text_color(110, 110, 110)
            if footer_note:
                self.cell(0, 4, footer_note, align="C", new_x="LMARGIN", new_y="NEXT")
            self.cell(0, 4, f"第 {self.page_no()} 页 / 共 {{nb}} 页", align="C")
            if test:
                self.set_text_color(*SEAL_RED)
                self.set_xy(self.l_margin, 6)
                self.cell(0, 4, "TEST ONLY · 测试材料，无法律效力", align="R")
            self.set_text_color(0, 0, 0)

    pdf = Pdf(format="A4", unit="mm")
    pdf.set_margins(22, 20, 22)
    pdf.set_auto_page_break(True, margin=22)
    body = FONT_DIR / BODY_FONT[0]
    body_font = BODY_FONT if body.exists() else FALLBACK_BODY
    pdf.add_font("body", fname=str(_font_path(body_font[0])), collection_font_number=body_font[1])
    pdf.add_font("head", fname=str(_font_path(HEAD_FONT[0])), collection_font_number=HEAD_FONT[1])
    pdf.set_lang("zh-CN")
    pdf.set_title(doc.title)
    if doc.subject:
        pdf.set_subject(doc.subject)
    if doc.author:
        pdf.set_author(doc.author)
    if doc.keywords:
        pdf.set_keywords(" ".join(doc.keywords))
    pdf.set_creator("mediation server")
    pdf.alias_nb_pages()
    return pdf


def _paragraph(pdf, text: str, *, size: float = 12, line_h: float = 7.2, indent: bool = True,
               font: str = "body") -> None:
    pdf.set_font(font, size=size)
    width = pdf.w - pdf.l_margin - pdf.r_margin
    lead = "\u3000\u3000" if indent and text and not text.startswith(("\u3000", " ")) else ""
    for line in wrap(pdf.get_string_width, lead + text, width):
        pdf.cell(0, line_h, line, new_x="LMARGIN", new_y="NEXT")


def _draw_seal(pdf, cx: float, cy: float, name: str, *, test: bool) -> None:
    """A round red seal: the institution's name along the rim and a star in the middle."""
    r = 19.0
    pdf.set_draw_color(*SEAL_RED)
    pdf.set_fill_color(*SEAL_RED)
    pdf.set_text_color(*SEAL_RED)
    pdf.set_line_width(1.1)
    pdf.circle(cx, cy, r)
    pdf.star(cx, cy, 2.6, 6.5, 5, rotate_degrees=-90, style="F")
    text = name[:18]
    pdf.set_font("head", size=8.5 if len(text) > 12 else 9.5)
    n = len(text)
    span = min(250.0, 20.0 * n)
    rim = r - 4.6
    for i, ch in enumerate(text):
        # Angles measured clockwise from the top, centred on it.
        a = -span / 2 + span * (i + 0.5) / n
        rad = math.radians(a)
        x = cx + rim * math.sin(rad)
        y = cy - rim * math.cos(rad)
        w = pdf.get_string_width(ch)
        with pdf.rotation(-a, x, y):
            pdf.text(x - w / 2, y + 1.4, ch)
    pdf.set_font("head", size=7)
    label = "测试用章 TEST ONLY" if test else "调解专用章"
    w = pdf.get_string_width(label)
    pdf.text(cx - w / 2, cy + 11.5, label)
    pdf.set_text_color(0, 0, 0)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_line_width(0.2)


def _signature_table(pdf, doc: Document) -> None:
    width = pdf.w - pdf.l_margin - pdf.r_margin
    cols = [0.19, 0.15, 0.26, 0.19, 0.21]
    ws = [width * c for c in cols]
    row_h = 18.0
    pdf.set_font("head", size=10)
    pdf.set_fill_color(240, 240, 240)
    if pdf.get_y() + 8 + row_h > pdf.h - pdf.b_margin:
        pdf.add_page()
    for w, head in zip(ws, doc.signature_headers):
        pdf.cell(w, 8, head, border=1, align="C", fill=True)
    pdf.ln(8)
    pdf.set_font("body", size=9)
    for row in doc.signatures:
        if pdf.get_y() + row_h > pdf.h - pdf.b_margin:
            pdf.add_page()
        x0, y0 = pdf.get_x(), pdf.get_y()
        cells = [row.name, row.role, "", row.signed_at, row.method]
        x = x0
        for w, value in zip(ws, cells):
            pdf.rect(x, y0, w, row_h)
            if value:
                lines = wrap(pdf.get_string_width, value, w - 3)[:3]
                top = y0 + (row_h - 4.6 * len(lines)) / 2
                for k, line in enumerate(lines):
                    pdf.set_xy(x + 1.5, top + 4.6 * k)
                    pdf.cell(w - 3, 4.6, line, align="C")
            x += w
        if row.image:
            from PIL import Image
            img = Image.open(io.BytesIO(row.image))
            iw, ih = img.size
            box_w, box_h = ws[2] - 4, row_h - 3
            scale = min(box_w / iw, box_h / ih)
            dw, dh = iw * scale, ih * scale
            sig_x = x0 + ws[0] + ws[1] + (ws[2] - dw) / 2
            pdf.image(io.BytesIO(row.image), x=sig_x, y=y0 + (row_h - dh) / 2, w=dw, h=dh)
        pdf.set_xy(x0, y0 + row_h)


def render(doc: Document) -> bytes:
    """Lay the document out; returns the PDF bytes (unsigned)."""
    pdf = _make_pdf(doc)
    pdf.add_page()
    pdf.set_font("head", size=20)
    pdf.cell(0, 14, doc.title, align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("body", size=10.5)
    for label, value in doc.meta:
        width = pdf.w - pdf.l_margin - pdf.r_margin
        for line in wrap(pdf.get_string_width, f"{label}：{value}", width):
            pdf.cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    for sec in doc.sections:
        if sec.heading:
            if pdf.get_y() + 20 > pdf.h - pdf.b_margin:
                pdf.add_page()
            pdf.set_font("head", size=12.5)
            pdf.cell(0, 9, sec.heading, new_x="LMARGIN", new_y="NEXT")
        for p in sec.paragraphs:
            _paragraph(pdf, p)
        pdf.ln(2)
    if doc.signatures:
        pdf.ln(3)
        # The sign-off table and the seal stay together on one page when they fit on one.
        need = 8 + 18.0 * len(doc.signatures) + (50 if doc.seal_name else 0)
        if pdf.get_y() + need + 9 > pdf.h - pdf.b_margin and need < pdf.h - pdf.b_margin - pdf.t_margin - 9:
            pdf.add_page()
        if doc.signature_title:
            pdf.set_font("head", size=12.5)
            pdf.cell(0, 9, doc.signature_title, new_x="LMARGIN", new_y="NEXT")
        _signature_table(pdf, doc)
    if doc.seal_name:
        if pdf.get_y() + 48 > pdf.h - pdf.b_margin:
            pdf.add_page()
        pdf.ln(8)
        y = pdf.get_y()
        right = pdf.w - pdf.r_margin
        pdf.set_font("body", size=12)
        lines = [doc.seal_name, doc.seal_caption, doc.seal_date]
        for k, line in enumerate([x for x in lines if x]):
            w = pdf.get_string_width(line)
            pdf.text(right - w - 6, y + 10 + 8 * k, line)
        _draw_seal(pdf, right - 30, y + 16, doc.seal_name, test=doc.test_material)
        pdf.set_y(y + 42)
    return bytes(pdf.output())


async def render_async(doc: Document) -> bytes:
    return await asyncio.to_thread(render, doc)


# --- signing and verification ------------------------------------------------------------------------

SEAL_FIELD = "InstitutionSeal"


async def sign(data: bytes, identity, *, reason: str, location: str = "", tsa_url: str | None = None,
               field_name: str = SEAL_FIELD) -> bytes:
    """PAdES signature of the institution over the whole file (plus an RFC 3161 timestamp with a TSA)."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers

    timestamper = None
    if tsa_url:
        from pyhanko.sign.timestamps import HTTPTimeStamper
        timestamper = HTTPTimeStamper(tsa_url, timeout=15)
    writer = IncrementalPdfFileWriter(io.BytesIO(data))
    meta = signers.PdfSignatureMetadata(field_name=field_name, md_algorithm="sha256",
                                        subfilter=fields.SigSeedSubFilter.PADES, reason=reason,
                                        location=location or None, use_pades_lta=False)
    out = await signers.async_sign_pdf(writer, meta, signer=identity.signer(), timestamper=timestamper)
    return out.getvalue()


@dataclass
class SignatureCheck:
    field: str
    intact: bool
    valid: bool
    trusted: bool
    entire_file: bool
    modification: str
    signer: str
    signer_sha256: str
    signing_time: str | None
    timestamp: str | None
    summary: str = ""

    @property
    def ok(self) -> bool:
        return self.intact and self.valid and self.trusted and self.entire_file


@dataclass
class PdfCheck:
    ok: bool
    signatures: list[SignatureCheck]
    error: str = ""
    keywords: str = ""
    title: str = ""

    def keyword(self, name: str) -> str | None:
        for part in self.keywords.split():
            if part.startswith(name + ":"):
                return part[len(name) + 1:]
        return None

    def to_json(self) -> dict:
        return {"ok": self.ok, "error": self.error, "title": self.title, "keywords": self.keywords,
                "signatures": [{**s.__dict__, "ok": s.ok} for s in self.signatures]}


async def verify(data: bytes, trust_roots) -> PdfCheck:
    """Every embedded signature checked with pyHanko's validator. Anything unreadable is a failure."""
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        sigs = list(reader.embedded_signatures)
        info = {}
        try:
            raw = reader.trailer_view.get("/Info")
            info = raw.get_object() if raw is not None else {}
        except Exception:  # noqa: BLE001 - metadata is informative only
            info = {}
        keywords = str(info.get("/Keywords", "")) if info else ""
        title = str(info.get("/Title", "")) if info else ""
    except Exception as exc:  # noqa: BLE001 - a damaged file is simply not valid
        return PdfCheck(False, [], f"the file cannot be read as a PDF ({type(exc).__name__}: {exc})")
    if not sigs:
        return PdfCheck(False, [], "the file carries no signature", keywords, title)
    checks: list[SignatureCheck] = []
    error = ""
    for sig in sigs:
        vc = ValidationContext(trust_roots=list(trust_roots), allow_fetching=False)
        try:
            st = await async_validate_pdf_signature(sig, vc)
        except Exception as exc:  # noqa: BLE001
            error = f"signature {sig.field_name} cannot be validated ({type(exc).__name__}: {exc})"
            checks.append(SignatureCheck(sig.field_name, False, False, False, False, "unknown", "", "", None, None,
                                         error))
            continue
        from pyhanko.sign.validation.status import SignatureCoverageLevel
        cert = st.signing_cert
        ts = None
        if st.timestamp_validity is not None:
            ts = st.timestamp_validity.timestamp.isoformat()
        checks.append(SignatureCheck(
            field=sig.field_name, intact=bool(st.intact), valid=bool(st.valid), trusted=bool(st.trusted),
            entire_file=st.coverage == SignatureCoverageLevel.ENTIRE_FILE,
            modification=str(getattr(st.modification_level, "name", st.modification_level)),
            signer=cert.subject.human_friendly if cert is not None else "",
            signer_sha256=hashlib.sha256(cert.dump()).hexdigest() if cert is not None else "",
            signing_time=st.signer_reported_dt.isoformat() if st.signer_reported_dt else None,
            timestamp=ts, summary=st.summary()))
    ok = bool(checks) and all(c.ok for c in checks)
    if not ok and not error:
        bad = next(c for c in checks if not c.ok)
        if not bad.intact:
            error = "the document was altered after it was signed (digest mismatch)"
        elif not bad.valid:
            error = "the signature value is not valid"
        elif not bad.trusted:
            error = "the signing certificate does not chain to a trusted root"
        else:
            error = "the signature does not cover the whole file (content was added after signing)"
    return PdfCheck(ok, checks, error, keywords, title)


def today_cn(value: dt.datetime, tz) -> str:
    v = value.astimezone(tz)
    return f"{v.year}年{v.month}月{v.day}日"
