"""The case's evidence in the live room (docs/protocol.md, "Evidence"): what may be presented,
files a participant adds during the session, the mediator's review of them, and the pages shown
(an image, or one page of a PDF rendered here with poppler's pdftoppm), each viewer's copy
watermarked with that viewer's name, the case number and the time.

Files added in a session go through the filing's own checks (cases.check_uploads: type sniffed
from the content, size limit) and the same store, with their SHA-256 in the record.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import io
import math
import os
import tempfile
from collections import OrderedDict
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import AppError, NotFound, ValidationFailed
from server.core.models import Evidence
from server.infra.files import FileStore
from server.services import live as live_svc
from server.services.cases import ALLOWED_EVIDENCE, Upload, check_uploads

# What the room can put on screen; audio and video evidence is played outside the room.
PRESENTABLE = ("image/jpeg", "image/png", "image/webp", "application/pdf")
MAX_PAGES = 500            # a PDF page number beyond this is refused before poppler is asked
RENDER_WIDTH = 1200         # px: sharp on a desktop, small enough for a phone's link
RENDER_TIMEOUT = 20.0       # s for pdfinfo / pdftoppm on one page
FONT = Path(os.environ.get("PDF_FONT_DIR", "/usr/share/fonts/opentype/noto")) / "NotoSansCJK-Regular.ttc"


def store_for(settings) -> FileStore:
    """The store the filing writes evidence to (server/system.py makes the same one)."""
    return FileStore(settings.evidence_dir)


class BadState(AppError):
    status = 409
    code = "bad_state"


def view(e: Evidence) -> dict:
    """An evidence item as the room shows it (no storage key)."""
    return {"id": e.id, "name": e.filename, "content_type": e.content_type, "size": e.size, "sha256": e.sha256,
            "in_session": e.session_id is not None, "session_id": e.session_id,
            "submitted_by": e.submitted_by, "submitted_name": e.submitted_name,
            "review": e.review, "presentable": e.content_type in PRESENTABLE and e.review in (None, "accepted"),
            "created_at": e.created_at.isoformat() if e.created_at else None}


async def list_for_case(s: AsyncSession, case_id: int) -> list[Evidence]:
    return list((await s.execute(select(Evidence).where(Evidence.case_id == case_id).order_by(Evidence.id)))
                .scalars().all())


async def get_of_case(s: AsyncSession, case_id: int, evidence_id: int) -> Evidence:
    """The evidence item, if it belongs to this case: another case's id is simply not found."""
    e = await s.get(Evidence, evidence_id)
    if e is None or e.case_id != case_id:
        raise NotFound("No such evidence file in this case.")
    return e


async def submit_in_session(s: AsyncSession, store: FileStore, p: live_svc.Pass, up: Upload,
                            *, max_bytes: int) -> Evidence:
    """A participant adds a file during the session: the filing's checks and store, marked as
    submitted in this session by this participant, waiting for the mediator's review."""
    [(checked, mime)] = check_uploads([up], max_bytes, 1)
    key, digest = await store.put(checked.data, ALLOWED_EVIDENCE[mime])
    try:
        e = Evidence(case_id=p.case_id, filename=(checked.filename or "").strip()[:255] or "file",
                     content_type=mime, size=len(checked.data), sha256=digest, storage_key=key,
                     session_id=p.session_id, submitted_by=p.participant_id, submitted_name=p.name[:100],
                     review="pending")
        s.add(e)
        await s.flush()
        await live_svc.record(s, p, "evidence.submitted", {"evidence_id": e.id, "file": e.filename,
                                                           "content_type": mime, "size": e.size, "sha256": digest})
    except BaseException:
        await store.delete(key)  # the transaction rolls back: no orphan file either
        raise
    return e


async def review(s: AsyncSession, p: live_svc.Pass, evidence_id: int, accept: bool) -> Evidence:
    """The mediator accepts or rejects a file added in the session, once. A rejected file stays in
    the case's evidence and its record; it cannot be presented."""
    await live_svc.mediator_actor(s, p)
    e = await get_of_case(s, p.case_id, evidence_id)
    if e.review is None:
        raise BadState("Filed evidence needs no review: it can be presented.")
    if e.review != "pending":
        raise BadState(f"This file was already {e.review}.")
    e.review = "accepted" if accept else "rejected"
    await live_svc.record(s, p, "evidence.reviewed", {"evidence_id": e.id, "file": e.filename,
                                                      "decision": e.review, "sha256": e.sha256})
    await s.flush()
    return e


async def for_presenting(s: AsyncSession, store: FileStore, case_id: int, evidence_id: int, page: int) -> tuple[Evidence, int]:
    """The item and its page count, if it may be presented at this page; else a clear refusal."""
    e = await get_of_case(s, case_id, evidence_id)
    if e.review == "pending":
        raise BadState("The mediator has not accepted this file for presentation yet.")
    if e.review == "rejected":
        raise BadState("The mediator rejected this file: it cannot be presented.")
    if e.content_type not in PRESENTABLE:
        raise ValidationFailed("Only images and PDF files can be presented.", fields={"evidence_id": "not_presentable"})
    pages = await page_count(store, e)
    check_page(page, pages)
    return e, pages


def check_page(page: int, pages: int) -> None:
    if not 1 <= page <= pages:
        raise ValidationFailed(f"Page {page} is out of range: this file has {pages} page(s).",
                               fields={"page": "out_of_range"})


# --- rendering --------------------------------------------------------------------------------
# One rendering per document page (keyed by the file's hash), kept in memory for the session's
# viewers; each viewer's copy is watermarked from it on every fetch.

_pages: dict[str, int] = {}
_rendered: OrderedDict[tuple[str, int], object] = OrderedDict()
RENDER_CACHE = 32


async def _run(*args: str) -> bytes:
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RENDER_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        raise ValidationFailed("This PDF takes too long to render.", fields={"evidence_id": "render_failed"})
    if proc.returncode != 0:
        raise ValidationFailed("This PDF cannot be rendered.", fields={"evidence_id": "render_failed"})
    return out


async def page_count(store: FileStore, e: Evidence) -> int:
    if e.content_type != "application/pdf":
        return 1
    if e.sha256 not in _pages:
        info = (await _run("pdfinfo", str(store._path(e.storage_key)))).decode(errors="replace")
        n = next((int(line.split(":", 1)[1]) for line in info.splitlines()
                  if line.startswith("Pages:") and line.split(":", 1)[1].strip().isdigit()), 0)
        if n < 1:
            raise ValidationFailed("This PDF has no pages.", fields={"evidence_id": "render_failed"})
        _pages[e.sha256] = min(n, MAX_PAGES)
    return _pages[e.sha256]


async def _render(store: FileStore, e: Evidence, page: int):
    from PIL import Image, ImageOps

    key = (e.sha256, page)
    if key in _rendered:
        _rendered.move_to_end(key)
        return _rendered[key]
    if e.content_type == "application/pdf":
        with tempfile.TemporaryDirectory() as tmp:
            await _run("pdftoppm", "-f", str(page), "-l", str(page), "-png", "-singlefile",
                       "-scale-to-x", str(RENDER_WIDTH), "-scale-to-y", "-1",
                       str(store._path(e.storage_key)), str(Path(tmp) / "page"))
            img = Image.open(Path(tmp) / "page.png")
            img.load()
    else:
        data = await store.get(e.storage_key)

        def decode():
            im = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))  # a phone photo stands up
            im.thumbnail((RENDER_WIDTH, RENDER_WIDTH * 2))
            return im
        try:
            img = await asyncio.to_thread(decode)
        except Exception:  # noqa: BLE001 - a damaged image is refused, not a server error
            raise ValidationFailed("This image cannot be shown.", fields={"evidence_id": "render_failed"}) from None
    img = img.convert("RGBA")  # as the watermark is laid over it
    _rendered[key] = img
    while len(_rendered) > RENDER_CACHE:
        _rendered.popitem(last=False)
    return img


_layers: OrderedDict[tuple, object] = OrderedDict()
LAYER_CACHE = 64


def _layer(w: int, h: int, lines: tuple[str, ...]):
    """One viewer's watermark for a page size: the text tiled across, faint, so a screenshot of any
    part still names its viewer, and once legibly along the bottom edge. Made once per viewer, page
    size and minute (the time is part of the text), then laid over every page they fetch."""
    from PIL import Image, ImageDraw, ImageFont

    key = (w, h, lines)
    if key in _layers:
        _layers.move_to_end(key)
        return _layers[key]
    size = max(14, w // 40)
    try:
        font = ImageFont.truetype(str(FONT), size)
    except OSError:
        font = ImageFont.load_default()
    text = "  ".join(lines)
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    tw = int(probe.textlength(text, font=font)) + size * 4
    tile = Image.new("RGBA", (tw, size * 2), (0, 0, 0, 0))
    ImageDraw.Draw(tile).text((size * 2, size // 3), text, font=font, fill=(200, 30, 30, 46))
    tile = tile.rotate(25, resample=Image.BICUBIC, expand=True)
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    # Tiles follow each other along the slant, so each line reads on; lines are size * 6 apart.
    dx, dy = int(tw * math.cos(math.radians(25))), int(tw * math.sin(math.radians(25)))
    cols = w // dx + 2
    for y0 in range(-tile.height, h + cols * dy + size * 6, size * 6):
        for i in range(cols):
            x, y = i * dx - size * 2, y0 - i * dy
            if x + tile.width <= 0 or y + tile.height <= 0 or x >= w or y >= h:
                continue
            # alpha_composite with dest needs the source cut to what lands on the layer
            sx, sy = max(0, -x), max(0, -y)
            part = tile.crop((sx, sy, min(tile.width, w - x), min(tile.height, h - y)))
            layer.alpha_composite(part, dest=(max(0, x), max(0, y)))
    band = ImageDraw.Draw(layer)
    band.rectangle((0, h - size * 2, w, h), fill=(0, 0, 0, 120))
    band.text((size // 2, h - size * 1.6), text, font=font, fill=(255, 255, 255, 230))
    _layers[key] = layer
    while len(_layers) > LAYER_CACHE:
        _layers.popitem(last=False)
    return layer


def _watermark(img, lines: list[str]) -> bytes:
    from PIL import Image

    layer = _layer(img.width, img.height, tuple(lines))
    out = Image.alpha_composite(img, layer).convert("RGB")
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=80)
    return buf.getvalue()


async def watermarked_page(store: FileStore, e: Evidence, page: int, *, viewer: str, case_number: str) -> bytes:
    """The page as one viewer sees it: JPEG, with the viewer's name, the case number and the time."""
    img = await _render(store, e, page)
    at = dt.datetime.now(dt.timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M")
    return await asyncio.to_thread(_watermark, img, [viewer, case_number, at])
