"""The clerks' archive: search, the full record of a case, access logging, integrity checks, export.

Clerks (and admins) read; nothing here changes a case. Every reading of one case by an
archive reader is itself appended to the audit chain (``case.viewed``, ``case.verified``,
``case.exported``), in its own write unit, before the response is sent.

Extension points for the modules that land later (recordings, agreements, court hand-off):

* ``register_record_section(name, fn, default)`` adds a key to the case record
  (``GET /api/v1/cases/{id}/record`` and the record page); ``recordings`` and ``outcome`` are
  declared here with their empty defaults, so the page lists whatever rows exist later.
* ``register_checker(name, fn)`` adds an integrity check (recording hashes, manifest and
  agreement signatures). A checker gets a ``CheckContext`` (``ctx.case`` is ``None`` when the
  whole archive is checked) and returns a ``CheckOutcome`` naming every mismatch.
* ``register_export_files(name, fn)`` adds files (recordings, the signed PDF) to the export zip.

One module (~780 lines): search, the record, checks and export read the same registries and case views.
"""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import os
import re
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import audit
from server.core import serialize as ser
from server.core.errors import NotFound, ValidationFailed
from server.core.models import AuditEntry, AuditHead, Case, ChatMessage, Evidence, Party, User
from server.core.policy import Actor, case_scope, require_staff, require_view
from server.core.schemas import (CASE_TYPES, CATEGORIES, CONTROL_MESSAGE, DATE_MESSAGE, ID_MAX, date_in_range, has_control,
                                 parse_date, parse_id, whole_number)
from server.infra.files import FileStore
from server.core.workflow import STATUSES
from server.services import sessions as session_svc
from server.services.cases import ACCESS_ACTIONS, get_case, get_case_by_number

READER_ROLES = ("clerk", "admin")
MAX_LIMIT = 100
DEFAULT_LIMIT = 20
_NUMBER = re.compile(r"^[A-Z]{2,8}\d*-\d{4}-\d{6}$")


def require_reader(actor: Actor) -> User:
    """The archive is for clerks and admins; they read, never change."""
    return require_staff(actor, *READER_ROLES)


# --- search -------------------------------------------------------------------------------------

SEARCH_PARAMS = {
    "number": "case number, whole or part",
    "party": "party name, whole or part",
    "type": "one of " + ", ".join(CASE_TYPES),
    "category": "one of " + ", ".join(CATEGORIES),
    "status": "one or more statuses, comma-separated",
    "institution_id": "institution id",
    "mediator_id": "mediator (user) id",
    "from": "filed on or after this date (YYYY-MM-DD, centre's time zone)",
    "to": "filed on or before this date (YYYY-MM-DD)",
    "after": "cursor: the page after (next_cursor of the previous answer)",
    "before": "cursor: the page before (prev_cursor)",
    "limit": f"1-{MAX_LIMIT}, default {DEFAULT_LIMIT}",
}


@dataclass
class SearchQuery:
    number: str | None = None
    party: str | None = None
    type: str | None = None
    category: str | None = None
    status: list[str] = field(default_factory=list)
    institution_id: int | None = None
    mediator_id: int | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    after: tuple[dt.datetime, int] | None = None
    before: tuple[dt.datetime, int] | None = None
    limit: int = DEFAULT_LIMIT

    def params(self) -> dict[str, str]:
        """The filters as query parameters (without cursors), for links."""
        out = {"number": self.number, "party": self.party, "type": self.type, "category": self.category,
               "status": ",".join(self.status) or None,
               "institution_id": self.institution_id, "mediator_id": self.mediator_id,
               "from": self.date_from.isoformat() if self.date_from else None,
               "to": self.date_to.isoformat() if self.date_to else None,
               "limit": self.limit if self.limit != DEFAULT_LIMIT else None}
        return {k: str(v) for k, v in out.items() if v not in (None, "")}


def encode_cursor(created_at: dt.datetime, case_id: int) -> str:
    raw = f"{created_at.astimezone(dt.timezone.utc).isoformat()}|{case_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(value: str) -> tuple[dt.datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        at, _, cid = raw.partition("|")
        when, case_id = dt.datetime.fromisoformat(at), parse_id(cid)
        if when.tzinfo is None or case_id is None:
            raise ValueError
        date_in_range(when.date())
        return when, case_id
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not a cursor from this server")


def positive_int(value: str, *, maximum: int = ID_MAX) -> int:
    """A whole number from 1 to `maximum` in ASCII digits (an id by default: docs/api.md, "Accepted input")."""
    n = whole_number(value)
    if n is None or not 0 < n <= maximum:
        raise ValueError(f"a whole number from 1 to {maximum}")
    return n


def unknown_params(query: Mapping[str, str], allowed) -> dict[str, str]:
    """Field errors for parameters this call does not take, or gives twice (reported with the others)."""
    errors = {k: "unknown parameter" for k in sorted(set(query) - set(allowed) - {"lang"})}  # ?lang= anywhere
    if hasattr(query, "getall"):
        errors.update({k: "given more than once" for k in set(query) if len(query.getall(k)) > 1})
    return errors


def parse_search(query: Mapping[str, str], *, extra_allowed=()) -> SearchQuery:
    """Validate the search's query parameters; every problem is named in a 422."""
    q = SearchQuery()
    errors = unknown_params(query, (*SEARCH_PARAMS, *extra_allowed))

    def text(name: str, limit: int) -> str | None:
        v = (query.get(name) or "").strip()
        if len(v) > limit:
            errors[name] = f"at most {limit} characters"
            return None
        if has_control(v):
            errors[name] = CONTROL_MESSAGE
            return None
        return v or None

    q.number = text("number", 40)
    if q.number:
        q.number = q.number.upper()
    q.party = text("party", 100)
    for name, allowed in (("type", CASE_TYPES), ("category", CATEGORIES)):
        v = (query.get(name) or "").strip()
        if v:
            if v not in allowed:
                errors[name] = "one of " + ", ".join(allowed)
            else:
                setattr(q, name, v)
    raw_status = (query.get("status") or "").strip()
    if raw_status:
        parts = [x.strip() for x in raw_status.split(",") if x.strip()]
        bad = [x for x in parts if x not in STATUSES]
        if bad or not parts:
            errors["status"] = "one or more of " + ", ".join(STATUSES)
        else:
            q.status = parts
    for name in ("institution_id", "mediator_id"):
        v = (query.get(name) or "").strip()
        if v:
            try:
                setattr(q, name, positive_int(v))
            except ValueError as exc:
                errors[name] = str(exc)
    for name, attr in (("from", "date_from"), ("to", "date_to")):
        v = (query.get(name) or "").strip()
        if v:
            try:
                setattr(q, attr, parse_date(v))
            except ValueError:
                errors[name] = f"YYYY-MM-DD, {DATE_MESSAGE}"
    if q.date_from and q.date_to and q.date_from > q.date_to:
        errors["to"] = "on or after 'from'"
    for name in ("after", "before"):
        v = (query.get(name) or "").strip()
        if v:
            try:
                setattr(q, name, decode_cursor(v[:200]))
            except ValueError as exc:
                errors[name] = str(exc)
    if q.after and q.before:
        errors["before"] = "give 'after' or 'before', not both"
    v = (query.get("limit") or "").strip()
    if v:
        try:
            q.limit = positive_int(v, maximum=MAX_LIMIT)
        except ValueError:
            errors["limit"] = f"a number from 1 to {MAX_LIMIT}"
    if errors:
        raise ValidationFailed("Some search parameters are invalid.", fields=errors)
    return q


def day_bounds(date_from: dt.date | None, date_to: dt.date | None, tz: ZoneInfo):
    """[from 00:00, to+1 00:00) in the centre's time zone, as UTC datetimes."""
    lo = dt.datetime.combine(date_from, dt.time(), tz).astimezone(dt.timezone.utc) if date_from else None
    hi = (dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time(), tz).astimezone(dt.timezone.utc)
          if date_to else None)
    return lo, hi


def _filters(actor: Actor, q: SearchQuery, tz: ZoneInfo) -> list:
    out = []
    scope = case_scope(actor)
    if scope is not None:
        out.append(scope)
    if q.number:
        out.append(Case.number == q.number if _NUMBER.match(q.number)
                   else Case.number.contains(q.number, autoescape=True))
    if q.party:
        out.append(Case.id.in_(select(Party.case_id).where(Party.name.contains(q.party, autoescape=True))))
    if q.type:
        out.append(Case.type == q.type)
    if q.category:
        out.append(Case.category == q.category)
    if q.status:
        out.append(Case.status.in_(q.status))
    if q.institution_id:
        out.append(Case.institution_id == q.institution_id)
    if q.mediator_id:
        out.append(Case.mediator_id == q.mediator_id)
    lo, hi = day_bounds(q.date_from, q.date_to, tz)
    if lo:
        out.append(Case.created_at >= lo)
    if hi:
        out.append(Case.created_at < hi)
    return out


@dataclass
class SearchPage:
    cases: list[Case]
    total: int
    next_cursor: str | None
    prev_cursor: str | None


async def search(s: AsyncSession, actor: Actor, q: SearchQuery, tz: ZoneInfo) -> SearchPage:
    """Newest first, keyset-paginated on (created_at, id): every page costs the same, however deep."""
    require_reader(actor)
    filters = _filters(actor, q, tz)
    key = tuple_(Case.created_at, Case.id)
    query = select(Case).where(*filters)
    backwards = q.before is not None
    if q.after:
        query = query.where(key < tuple_(*q.after))
    if backwards:
        query = query.where(key > tuple_(*q.before)).order_by(Case.created_at.asc(), Case.id.asc())
    else:
        query = query.order_by(Case.created_at.desc(), Case.id.desc())
    rows = list((await s.execute(query.limit(q.limit + 1))).unique().scalars().all())
    more = len(rows) > q.limit
    rows = rows[:q.limit]
    if backwards:
        rows.reverse()
    total = (await s.execute(select(func.count()).select_from(Case).where(*filters))).scalar_one()
    next_cursor = prev_cursor = None
    if rows:
        first, last = encode_cursor(rows[0].created_at, rows[0].id), encode_cursor(rows[-1].created_at, rows[-1].id)
        if backwards:  # older rows exist (the cursor's own row at least); newer ones if there were more
            next_cursor, prev_cursor = last, (first if more else None)
        else:
            next_cursor, prev_cursor = (last if more else None), (first if q.after else None)
    return SearchPage(rows, total, next_cursor, prev_cursor)


def search_item(c: Case) -> dict:
    d = ser.case_summary(c)
    d["parties"] = [{"side": p.side, "name": p.name} for p in c.parties]
    d["evidence_count"] = len(c.evidence)
    return d


# --- the record of a case ----------------------------------------------------------------------

RecordSection = Callable[[AsyncSession, Case], Awaitable[Any]]
_SECTIONS: dict[str, tuple[RecordSection | None, Any]] = {
    # Filled in by the recording and outcome modules as they land; until then, empty.
    "recordings": (None, []),
    "outcome": (None, None),
    "submissions": (None, []),
}


def register_record_section(name: str, fn: RecordSection, default: Any = None) -> None:
    """Add (or provide) a section of the case record: ``await fn(session, case)`` -> JSON-able value."""
    _SECTIONS[name] = (fn, default if default is not None else _SECTIONS.get(name, (None, None))[1])


async def record_sections(s: AsyncSession, case: Case) -> dict[str, Any]:
    out = {}
    for name, (fn, default) in _SECTIONS.items():
        out[name] = await fn(s, case) if fn is not None else (list(default) if isinstance(default, list) else default)
    return out


async def mediator_choices(s: AsyncSession, actor: Actor) -> list[dict]:
    """Mediators to filter the archive by: a clerk of an institution sees that institution's."""
    q = select(User).where(User.role == "mediator").order_by(User.name)
    if actor.user.role == "clerk" and actor.user.institution_id is not None:
        q = q.where(User.institution_id == actor.user.institution_id)
    return [{"id": u.id, "name": u.name or u.username} for u in (await s.execute(q)).unique().scalars()]


def chat_message(m: ChatMessage) -> dict:
    return {"id": m.id, "at": ser.iso(m.created_at), "participant_id": m.participant_id, "name": m.name,
            "role": m.role, "area": m.area, "text": m.text}


async def case_record(s: AsyncSession, actor: Actor, case_id: int) -> dict:
    """Everything about one case, in order: the body of GET /cases/{id}/record and of the record page."""
    case = await get_case(s, case_id)
    require_view(actor, case)
    entries = list((await s.execute(select(AuditEntry).where(AuditEntry.case_id == case.id)
                                    .order_by(AuditEntry.seq))).scalars().all())
    sessions = await session_svc.list_sessions(s, case.id)
    chats: dict[int, list[ChatMessage]] = {x.id: [] for x in sessions}
    if sessions:
        for m in (await s.execute(select(ChatMessage).where(ChatMessage.session_id.in_(list(chats)))
                                  .order_by(ChatMessage.created_at, ChatMessage.id))).scalars():
            chats[m.session_id].append(m)
    out_sessions = []
    for x in sessions:
        invites = await session_svc.list_invites(s, x.id)
        events = [ser.audit_entry(e) for e in entries if e.session_id == x.id and e.action not in ACCESS_ACTIONS]
        length = ((x.ended_at - x.started_at).total_seconds() if x.started_at and x.ended_at else None)
        out_sessions.append({**ser.session(x), "duration_seconds": length,
                             "invites": await session_svc.invite_views(s, invites), "events": events,
                             "chat": [chat_message(m) for m in chats[x.id]]})
    return {
        "case": ser.case_full(case, staff=True),
        "timeline": [ser.audit_entry(e) for e in entries if e.action not in ACCESS_ACTIONS],
        "access_log": [ser.audit_entry(e) for e in entries if e.action in ACCESS_ACTIONS],
        "sessions": out_sessions,
        **await record_sections(s, case),
    }


async def log_access(db, actor: Actor, case_id: int, action: str = "case.viewed", **data) -> None:
    """Write an archive reader's access to the chain (its own write unit). Others are not logged:
    intake and mediators work the case, and their every page view is not an archive access."""
    if actor.user is None or actor.user.role not in READER_ROLES:
        return
    async with db.session() as s:
        await audit.append(s, actor.ref(), action, case_id=case_id,
                           data={"role": actor.user.role, **{k: v for k, v in data.items() if v is not None}})


# --- integrity ------------------------------------------------------------------------------------

@dataclass
class Problem:
    check: str
    item: str  # what does not match, e.g. "audit entry 17" or "evidence 3 (欠条.png)"
    problem: str  # a stable code: altered, link_broken, missing, hash_mismatch, not_in_audit, ...
    detail: str = ""
    expected: str | None = None
    actual: str | None = None
    case_id: int | None = None


@dataclass
class CheckOutcome:
    name: str
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class CheckContext:
    s: AsyncSession
    case: Case | None  # None: the whole archive
    evidence_store: FileStore
    settings: Any = None
    progress: Callable[[str], None] | None = None

    def say(self, text: str) -> None:
        if self.progress:
            self.progress(text)


Checker = Callable[[CheckContext], Awaitable[CheckOutcome]]
_CHECKERS: dict[str, Checker] = {}


def register_checker(name: str, fn: Checker) -> None:
    """Add an integrity check (recordings, manifests, agreement signatures...). Runs after the built-ins."""
    _CHECKERS[name] = fn


def unregister_checker(name: str) -> None:
    _CHECKERS.pop(name, None)


def checkers() -> list[str]:
    return list(_CHECKERS)


async def _check_audit_case(ctx: CheckContext) -> CheckOutcome:
    """The case's entries: each one's content against its hash, and its links to both neighbours."""
    out = CheckOutcome("audit_chain")
    s, case = ctx.s, ctx.case
    entries = list((await s.execute(select(AuditEntry).where(AuditEntry.case_id == case.id)
                                    .order_by(AuditEntry.seq))).scalars().all())
    around = {e.seq - 1 for e in entries} | {e.seq + 1 for e in entries}
    neighbours = {e.seq: e for e in (await s.execute(select(AuditEntry).where(
        AuditEntry.seq.in_(sorted(around))))).scalars()}
    head = (await s.execute(select(AuditHead).where(AuditHead.id == 1))).scalar_one()
    for e in entries:
        out.checked += 1
        item = f"audit entry {e.seq} ({e.action})"
        digest = _digest(e)
        if digest != e.hash:
            out.problems.append(Problem("audit_chain", item, "altered", "content does not match its hash",
                                        e.hash, digest, case.id))
        prev = audit.GENESIS if e.seq == 1 else (neighbours[e.seq - 1].hash if e.seq - 1 in neighbours else None)
        if prev is None:
            out.problems.append(Problem("audit_chain", item, "missing_before",
                                        f"the entry before it (seq {e.seq - 1}) is missing", case_id=case.id))
        elif prev != e.prev_hash:
            out.problems.append(Problem("audit_chain", item, "link_broken",
                                        "prev_hash does not match the entry before it", prev, e.prev_hash, case.id))
        nxt = neighbours.get(e.seq + 1)
        if nxt is not None:
            if nxt.prev_hash != e.hash:
                out.problems.append(Problem("audit_chain", item, "link_broken",
                                            f"the next entry (seq {nxt.seq}) does not point to this one",
                                            e.hash, nxt.prev_hash, case.id))
        elif head.seq != e.seq:
            out.problems.append(Problem("audit_chain", item, "missing_after",
                                        f"the entry after it (seq {e.seq + 1}) is missing", case_id=case.id))
        elif head.hash != e.hash:
            out.problems.append(Problem("audit_chain", item, "head_mismatch",
                                        "the chain head does not match this last entry", e.hash, head.hash, case.id))
    return out


def _digest(e: AuditEntry) -> str:
    return audit.entry_digest(seq=e.seq, case_id=e.case_id, session_id=e.session_id, actor_type=e.actor_type,
                              actor_id=e.actor_id, actor_name=e.actor_name, action=e.action, data=e.data,
                              created_at=e.created_at, prev_hash=e.prev_hash)


async def check_audit(ctx: CheckContext) -> CheckOutcome:
    if ctx.case is not None:
        return await _check_audit_case(ctx)
    ctx.say("audit chain: recomputing every entry")
    problems = await audit.verify_chain(ctx.s)
    count = (await ctx.s.execute(select(func.count()).select_from(AuditEntry))).scalar_one()
    out = CheckOutcome("audit_chain", checked=count)
    for p in problems:
        code = ("altered" if "altered" in p.problem else "missing_before" if "missing" in p.problem
                else "head_mismatch" if "head" in p.problem else "link_broken")
        out.problems.append(Problem("audit_chain", f"audit entry {p.seq}", code, p.problem))
    return out


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


async def _filed_hashes(s: AsyncSession, case_ids: list[int]) -> tuple[dict[int, list[str]], dict[int, str]]:
    """The evidence hashes the chain recorded: each case's filing entry, and each file added in a
    live session (`evidence.submitted`, server/services/evidence.py) by its evidence id."""
    out: dict[int, list[str]] = {}
    added: dict[int, str] = {}
    rows = await s.execute(select(AuditEntry.case_id, AuditEntry.action, AuditEntry.data).where(
        AuditEntry.action.in_(("case.filed", "evidence.submitted")), AuditEntry.case_id.in_(case_ids)))
    for cid, action, data in rows:
        if action == "case.filed":
            out[cid] = [x.get("sha256") for x in (data or {}).get("evidence", []) if isinstance(x, dict)]
        elif isinstance((data or {}).get("evidence_id"), int):
            added[data["evidence_id"]] = data.get("sha256")
    return out, added


async def check_evidence(ctx: CheckContext) -> CheckOutcome:
    """Every evidence file against its stored SHA-256, and that hash against the one the filing logged."""
    out = CheckOutcome("evidence")
    last_id = 0
    while True:
        q = select(Evidence).where(Evidence.id > last_id).order_by(Evidence.id).limit(500)
        if ctx.case is not None:
            q = q.where(Evidence.case_id == ctx.case.id)
        batch = list((await ctx.s.execute(q)).scalars().all())
        if not batch:
            break
        last_id = batch[-1].id
        logged, added = await _filed_hashes(ctx.s, sorted({e.case_id for e in batch}))
        for e in batch:
            out.checked += 1
            item = f"evidence {e.id} ({e.filename})"
            ctx.say(f"evidence: {e.filename}")
            try:
                path = ctx.evidence_store._path(e.storage_key)
                actual = await asyncio.to_thread(_hash_file, path)
            except (FileNotFoundError, ValueError):
                out.problems.append(Problem("evidence", item, "missing", "the stored file is missing",
                                            e.sha256, None, e.case_id))
                continue
            if actual != e.sha256:
                out.problems.append(Problem("evidence", item, "hash_mismatch",
                                            "the stored file does not match its SHA-256 (file altered)",
                                            e.sha256, actual, e.case_id))
            if e.session_id is not None:  # added in a live session: its own entry holds the hash
                if added.get(e.id) != e.sha256:
                    out.problems.append(Problem("evidence", item, "not_in_audit",
                                                "the recorded SHA-256 is not the one logged when the file was added "
                                                "in the session (record altered)", added.get(e.id), e.sha256, e.case_id))
            elif e.case_id in logged and e.sha256 not in logged[e.case_id]:
                out.problems.append(Problem("evidence", item, "not_in_audit",
                                            "the recorded SHA-256 is not the one logged at filing (record altered)",
                                            ", ".join(logged[e.case_id]) or None, e.sha256, e.case_id))
    return out


async def check_case_state(ctx: CheckContext) -> CheckOutcome:
    """The case rows against what the chain says happened: status, institution and mediator."""
    out = CheckOutcome("case_state")
    q = (select(AuditEntry.case_id, AuditEntry.action, AuditEntry.data)
         .where(AuditEntry.action.like("case.%"), AuditEntry.case_id.is_not(None)).order_by(AuditEntry.seq))
    cq = select(Case.id, Case.number, Case.status, Case.institution_id, Case.mediator_id)
    if ctx.case is not None:
        q = q.where(AuditEntry.case_id == ctx.case.id)
        cq = cq.where(Case.id == ctx.case.id)
    derived: dict[int, dict] = {}
    for cid, action, data in (await ctx.s.execute(q)).all():
        d = derived.setdefault(cid, {"status": None, "institution_id": None, "mediator_id": None})
        data = data or {}
        if action == "case.filed":
            d.update(status="filed", institution_id=data.get("institution_id"))
        if action in ACCESS_ACTIONS:
            continue
        if "to" in data:
            d["status"] = data["to"]
        if action == "case.transfer":
            d.update(institution_id=data.get("to_institution"), mediator_id=None)
        if action == "case.assign":
            d["mediator_id"] = data.get("mediator_id")
        if action == "case.unassign":  # a declared conflict returns the case to intake
            d["mediator_id"] = None
    for cid, number, status, inst, med in (await ctx.s.execute(cq)).all():
        out.checked += 1
        d = derived.get(cid)
        if d is None:
            out.problems.append(Problem("case_state", f"case {number}", "not_in_audit",
                                        "the case has no filing entry in the audit log", case_id=cid))
            continue
        for name, actual in (("status", status), ("institution_id", inst), ("mediator_id", med)):
            expected = d[name]
            if (name == "mediator_id" or expected is not None) and expected != actual:
                out.problems.append(Problem("case_state", f"case {number}: {name}", "differs_from_audit",
                                            f"the case's {name} is not what the audit log records",
                                            str(expected), str(actual), cid))
    return out


register_checker("audit_chain", check_audit)
register_checker("evidence", check_evidence)
register_checker("case_state", check_case_state)


@dataclass
class IntegrityReport:
    scope: str  # "case" or "archive"
    case_id: int | None
    case_number: str | None
    checked_at: str
    results: list[CheckOutcome]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def problems(self) -> list[Problem]:
        return [p for r in self.results for p in r.problems]

    def to_json(self) -> dict:
        return {"ok": self.ok, "scope": self.scope, "case_id": self.case_id, "case_number": self.case_number,
                "checked_at": self.checked_at,
                "checks": [{"name": r.name, "ok": r.ok, "checked": r.checked, "note": r.note,
                            "problems": [asdict(p) for p in r.problems]} for r in self.results]}


async def run_checks(s: AsyncSession, store: FileStore, *, case: Case | None = None, settings=None,
                     progress: Callable[[str], None] | None = None) -> IntegrityReport:
    ctx = CheckContext(s, case, store, settings, progress)
    results = []
    for name, fn in list(_CHECKERS.items()):
        ctx.say(f"check: {name}")
        try:
            res = await fn(ctx)
        except Exception as exc:  # noqa: BLE001 - a broken checker is itself a finding, not a crash
            res = CheckOutcome(name, problems=[Problem(name, name, "check_failed", f"{type(exc).__name__}: {exc}")])
        res.name = res.name or name
        results.append(res)
    return IntegrityReport("case" if case else "archive", case.id if case else None, case.number if case else None,
                           dt.datetime.now(dt.timezone.utc).isoformat(), results)


async def verify_case(db, actor: Actor, case_id: int, store: FileStore, settings=None) -> IntegrityReport:
    """The case page's button: check, then log that this reader checked (with the verdict)."""
    require_reader(actor)
    async with db.read() as s:
        case = await get_case(s, case_id)
        require_view(actor, case)
        report = await run_checks(s, store, case=case, settings=settings)
    await log_access(db, actor, case_id, "case.verified", ok=report.ok, problems=len(report.problems))
    return report


# --- export ---------------------------------------------------------------------------------------

@dataclass
class ExportFile:
    arcname: str
    kind: str  # evidence | recording | agreement | ...
    path: Path | None = None
    data: bytes | None = None
    recorded_sha256: str | None = None  # what the record says the file's hash is


ExportProvider = Callable[[AsyncSession, Case, Any], Awaitable[list[ExportFile]]]
_EXPORTERS: dict[str, ExportProvider] = {}


def register_export_files(name: str, fn: ExportProvider) -> None:
    _EXPORTERS[name] = fn


def _safe_name(name: str) -> str:
    name = re.sub(r"[\\/:*?\"<>|\x00-\x1f]", "_", name).strip(" .") or "file"
    return name[:120]


@dataclass
class ExportBundle:
    case_id: int
    number: str
    manifest: dict
    json_files: dict[str, Any]
    files: list[ExportFile]


async def gather_export(s: AsyncSession, actor: Actor | None, case: Case, store: FileStore, *,
                        settings=None, generated_by: str = "") -> ExportBundle:
    """Everything the zip holds, read in one unit (the files themselves are read while zipping)."""
    if actor is not None:
        require_reader(actor)
        require_view(actor, case)
    record = await case_record(s, actor or _SYSTEM_READER, case.id)
    entries = list((await s.execute(select(AuditEntry).where(AuditEntry.case_id == case.id)
                                    .order_by(AuditEntry.seq))).scalars().all())
    report = await run_checks(s, store, case=case, settings=settings)
    files = [ExportFile(f"evidence/{e.id}-{_safe_name(e.filename)}", "evidence", path=store._path(e.storage_key),
                        recorded_sha256=e.sha256) for e in case.evidence]
    for _name, fn in _EXPORTERS.items():
        files += await fn(s, case, settings)
    audit_rows = [{"seq": e.seq, "case_id": e.case_id, "session_id": e.session_id, "actor_type": e.actor_type,
                   "actor_id": e.actor_id, "actor_name": e.actor_name, "action": e.action, "data": e.data,
                   "created_at": e.created_at.astimezone(dt.timezone.utc).isoformat(timespec="microseconds"),
                   "prev_hash": e.prev_hash, "hash": e.hash} for e in entries]
    json_files: dict[str, Any] = {"record.json": record, "audit.json": {
        "about": "This case's entries of the hash-chained audit log. Each hash is the SHA-256 of the canonical "
                 "JSON of {seq, case_id, session_id, actor: [type, id, name], action, data, at, prev} "
                 "(sorted keys, no spaces, UTF-8); prev is the hash of the entry with seq - 1, which may "
                 "belong to another case.",
        "entries": audit_rows}}
    for sess in record["sessions"]:
        json_files[f"chat/session-{sess['id']}.json"] = {"session_id": sess["id"], "room_id": sess["room_id"],
                                                          "messages": sess["chat"]}
    manifest = {
        "format": "mediation-case-export/1",
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "generated_by": generated_by,
        "case": record["case"],
        "timeline": record["timeline"],
        "sessions": [{k: v for k, v in x.items() if k not in ("chat",)} for x in record["sessions"]],
        "recordings": record.get("recordings", []),
        "outcome": record.get("outcome"),
        "integrity_at_export": report.to_json(),
        "files": [],  # filled while zipping: path, kind, size, sha256 (and the recorded hash)
    }
    return ExportBundle(case.id, case.number, manifest, json_files, files)


_SYSTEM_READER = Actor(user=User(id=0, username="system", role="admin", name="system", institution_id=None))


def _dumps(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=2, default=str).encode()


def write_zip(bundle: ExportBundle, target: Path, progress: Callable[[int, int, str], None] | None = None) -> str:
    """Write the zip (blocking; run it in a thread). Returns its SHA-256. progress(done, total, name)."""
    blobs = {name: _dumps(obj) for name, obj in bundle.json_files.items()}
    sizes = []
    for f in bundle.files:
        try:
            sizes.append(len(f.data) if f.data is not None else f.path.stat().st_size)
        except OSError:
            sizes.append(0)
    total = sum(len(b) for b in blobs.values()) + sum(sizes)
    done = 0
    listed = []
    tmp = target.with_name(target.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, blob in blobs.items():
            zf.writestr(name, blob)
            listed.append({"path": name, "kind": "json", "size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()})
            done += len(blob)
            if progress:
                progress(done, total, name)
        for f, size in zip(bundle.files, sizes):
            entry = {"path": f.arcname, "kind": f.kind, "size": size, "sha256": None,
                     "recorded_sha256": f.recorded_sha256}
            h = hashlib.sha256()
            if f.data is not None:
                h.update(f.data)
                zf.writestr(zipfile.ZipInfo(f.arcname, date_time=_zip_time()), f.data, compress_type=zipfile.ZIP_STORED)
                done += len(f.data)
            else:
                try:
                    with open(f.path, "rb") as src, zf.open(zipfile.ZipInfo(f.arcname, date_time=_zip_time()),
                                                            "w", force_zip64=size > 2**31) as dst:
                        for chunk in iter(lambda: src.read(1 << 20), b""):
                            h.update(chunk)
                            dst.write(chunk)
                            done += len(chunk)
                            if progress:
                                progress(done, total, f.arcname)
                except OSError:
                    entry["missing"] = True
            if not entry.get("missing"):
                entry["sha256"] = h.hexdigest()
                entry["matches_record"] = f.recorded_sha256 is None or entry["sha256"] == f.recorded_sha256
            listed.append(entry)
            if progress:
                progress(done, total, f.arcname)
        bundle.manifest["files"] = listed
        zf.writestr("manifest.json", _dumps(bundle.manifest))
    os.replace(tmp, target)
    if progress:
        progress(total, total, "manifest.json")
    return _hash_file(target)


def _zip_time():
    return dt.datetime.now(dt.timezone.utc).timetuple()[:6]


async def export_case(db, actor: Actor | None, case_ref: int | str, store: FileStore, target_dir: Path | None = None,
                      *, settings=None, progress=None, generated_by: str = "") -> tuple[Path, str, ExportBundle]:
    """Build the zip for one case; log the export in the chain. Returns (path, sha256, bundle)."""
    async with db.read() as s:
        case = (await get_case(s, case_ref) if isinstance(case_ref, int) else await get_case_by_number(s, case_ref))
        if case is None:
            raise NotFound("No such case.")
        bundle = await gather_export(s, actor, case, store, settings=settings,
                                     generated_by=generated_by or (actor.ref().name if actor else "command line"))
    directory = Path(target_dir or tempfile.mkdtemp(prefix="export-"))
    path = directory / f"{_safe_name(bundle.number)}.zip"
    digest = await asyncio.to_thread(write_zip, bundle, path, progress)
    files = len(bundle.manifest["files"])
    if actor is not None:
        await log_access(db, actor, bundle.case_id, "case.exported", sha256=digest, files=files)
    else:
        async with db.session() as s:
            await audit.append(s, audit.ActorRef("system", "cli", "command line"), "case.exported",
                               case_id=bundle.case_id, data={"sha256": digest, "files": files})
    return path, digest, bundle
