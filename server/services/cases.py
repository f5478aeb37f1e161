"""Filing cases, the institution's decisions, assignment, withdrawal, closing and archiving."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import filetype
from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import audit, events
from server.core.errors import NotFound, Unauthorized, ValidationFailed
from server.core.models import AuditEntry, Case, CaseCounter, Evidence, Institution, MediationSession, Party, User
from server.core.policy import Actor, case_scope, require_case_mediator, require_intake_for, require_staff, require_view
from server.core.schemas import AssignIn, CaseIn, CloseIn, RejectIn, TransferIn, WithdrawIn, normalise_phone
from server.core.security import hash_secret_async, new_access_code, verify_secret_async
from server.infra.files import FileStore
from server.core.throttle import Caller, guard
from server.core.workflow import OPEN_STATUSES, next_status

ALLOWED_EVIDENCE = {
    "image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "application/pdf": ".pdf",
    "audio/mpeg": ".mp3", "audio/mp4": ".m4a", "video/mp4": ".mp4", "audio/x-wav": ".wav",
}
PAGE_SIZE = 20
# An archive reader's views, checks and exports of a case: in the chain, but not steps of the case,
# so the working timelines (staff case page, the applicant's history) leave them out.
ACCESS_ACTIONS = ("case.viewed", "case.verified", "case.exported")


@dataclass
class Upload:
    filename: str
    data: bytes


def check_uploads(uploads: list[Upload], max_bytes: int, max_files: int) -> list[tuple[Upload, str]]:
    """Check count, size and real type (by content, not by the name the browser sent)."""
    if len(uploads) > max_files:
        raise ValidationFailed(f"At most {max_files} evidence files.", fields={"evidence": "too_many_files"})
    checked = []
    for up in uploads:
        if not up.data:
            raise ValidationFailed(f"'{up.filename}' is empty.", fields={"evidence": "empty_file"})
        if len(up.data) > max_bytes:
            raise ValidationFailed(f"'{up.filename}' is larger than {max_bytes // (1024 * 1024)} MB.",
                                   fields={"evidence": "file_too_large"})
        kind = filetype.guess(up.data)
        if kind is None or kind.mime not in ALLOWED_EVIDENCE:
            raise ValidationFailed(f"'{up.filename}' is not an accepted file type (images, PDF, audio, MP4).",
                                   fields={"evidence": "file_type_not_allowed"})
        checked.append((up, kind.mime))
    return checked


async def _take_number(s: AsyncSession, inst: Institution) -> str:
    year = dt.datetime.now(dt.timezone.utc).year
    insert = pg_insert if s.bind.dialect.name == "postgresql" else sqlite_insert
    await s.execute(insert(CaseCounter).values(institution_id=inst.id, year=year, value=0)
                    .on_conflict_do_nothing())
    counter = (await s.execute(
        select(CaseCounter).where(CaseCounter.institution_id == inst.id, CaseCounter.year == year)
        .with_for_update())).scalar_one()
    counter.value += 1
    return f"{inst.prefix}-{year}-{counter.value:06d}"


async def file_case(s: AsyncSession, store: FileStore, data: CaseIn, uploads: list[Upload],
                    *, max_bytes: int, max_files: int, caller: Caller | None = None) -> tuple[Case, str]:
    """A resident files a case. Returns the case and its access code (shown once, stored hashed).
    The `caller`'s device is known for the case from now on (its look-ups pass an attack on it)."""
    checked = check_uploads(uploads, max_bytes, max_files)
    code = new_access_code()
    code_hash = await hash_secret_async(code)  # before any lock is taken: it is slow on purpose
    inst = await s.get(Institution, data.institution_id)
    if inst is None or not inst.active:
        raise ValidationFailed("Choose an institution that takes cases.",
                               fields={"institution_id": "unknown institution"})
    case = Case(number=await _take_number(s, inst), type=data.type, category=data.category,
                title=data.title, description=data.description, status="filed",
                institution_id=inst.id, access_code_hash=code_hash, parties=[], evidence=[])
    a = data.applicant
    case.parties.append(Party(side="applicant", name=a.name, phone=a.phone, id_number=a.id_number or "",
                              address=a.address or ""))
    for r in data.respondents:
        case.parties.append(Party(side="respondent", name=r.name, phone=r.phone or "", address=r.address or ""))
    s.add(case)
    await s.flush()
    written: list[str] = []
    try:
        for up, mime in checked:
            key, digest = await store.put(up.data, ALLOWED_EVIDENCE[mime])
            written.append(key)
            case.evidence.append(Evidence(filename=up.filename[:255] or "file", content_type=mime,
                                          size=len(up.data), sha256=digest, storage_key=key))
        await s.flush()
        await audit.append(s, audit.ActorRef("applicant", "", a.name), "case.filed", case_id=case.id, data={
            "number": case.number, "type": case.type, "category": case.category,
            "institution_id": inst.id, "evidence": [{"name": e.filename, "sha256": e.sha256} for e in case.evidence],
        })
        await events.publish(s, events.CaseTransitioned(case=case, action="filed", before=None, after=case.status,
                                                        data={"access_code": code}))
    except BaseException:
        # The transaction rolls back; don't leave orphan files behind either.
        for key in written:
            await store.delete(key)
        raise
    if caller is not None:
        guard.remember(applicant_key(case.number), caller)
    return case, code


async def get_case(s: AsyncSession, case_id: int, *, lock: bool = False) -> Case:
    q = select(Case).where(Case.id == case_id)
    if lock:
        q = q.with_for_update(of=Case)
    case = (await s.execute(q)).unique().scalar_one_or_none()
    if case is None:
        raise NotFound("No such case.")
    return case


async def get_case_by_number(s: AsyncSession, number: str) -> Case | None:
    return (await s.execute(select(Case).where(Case.number == number.strip().upper()))).unique().scalar_one_or_none()


def applicant_key(number: str) -> str:
    """The account an access code belongs to, for the throttle of guessing."""
    return "code:" + (number or "").strip().upper()[:40]


async def applicant_login(s: AsyncSession, number: str, access_code: str, phone: str | None, *,
                          caller: Caller) -> Actor:
    """Number + access code (+ phone on the portal) prove the applicant. One vague error for all misses.
    Guessing is throttled by the caller's address and by the case, but never on the applicant's own
    known device (server/core/throttle.py, docs/architecture.md "Guessing")."""
    attempt = guard.attempt(applicant_key(number), caller)
    case = await get_case_by_number(s, number) if number and len(number) <= 40 else None
    ok = case is not None and access_code and len(access_code) <= 32 and \
        await verify_secret_async(case.access_code_hash, access_code.strip().upper())
    if ok and phone is not None:
        applicant = next(p for p in case.parties if p.side == "applicant")
        ok = applicant.phone == normalise_phone(phone)
    if not ok:
        raise Unauthorized("Case number, phone or access code does not match.", code="bad_access_code")
    guard.succeeded(attempt)
    applicant = next(p for p in case.parties if p.side == "applicant")
    return Actor(applicant_case_id=case.id, applicant_name=applicant.name)


async def transition(s: AsyncSession, actor: Actor | None, case: Case, action: str, data: dict | None = None) -> None:
    """The one way a case takes a step: the workflow decides the new status, the audit chain
    records it, and `CaseTransitioned` lets the procedural rules follow (deadlines met and
    started, notifications; wired in server/system.py). `actor` None is the system itself."""
    before = case.status
    case.status = next_status(action, before)
    case.updated_at = dt.datetime.now(dt.timezone.utc)
    await audit.append(s, actor.ref() if actor is not None else audit.SYSTEM, f"case.{action}", case_id=case.id,
                       data={"from": before, "to": case.status, **(data or {})})
    await events.publish(s, events.CaseTransitioned(case=case, action=action, before=before, after=case.status,
                                                    actor=actor, data=data or {}))


async def accept(s: AsyncSession, actor: Actor, case_id: int) -> Case:
    case = await get_case(s, case_id, lock=True)
    require_intake_for(actor, case)
    await transition(s, actor, case, "accept")
    return case


async def reject(s: AsyncSession, actor: Actor, case_id: int, data: RejectIn) -> Case:
    case = await get_case(s, case_id, lock=True)
    require_intake_for(actor, case)
    await transition(s, actor, case, "reject", {"reason": data.reason})
    return case


async def transfer(s: AsyncSession, actor: Actor, case_id: int, data: TransferIn) -> Case:
    case = await get_case(s, case_id, lock=True)
    require_intake_for(actor, case)
    target = await s.get(Institution, data.institution_id)
    if target is None or not target.active:
        raise ValidationFailed("Choose an institution that takes cases.", fields={"institution_id": "unknown institution"})
    if target.id == case.institution_id:
        raise ValidationFailed("The case is already with this institution.", fields={"institution_id": "same institution"})
    source = case.institution_id
    await transition(s, actor, case, "transfer", {"from_institution": source, "to_institution": target.id,
                                                   "reason": data.reason})
    case.institution = target
    case.mediator = None
    return case


async def assign(s: AsyncSession, actor: Actor, case_id: int, data: AssignIn) -> Case:
    case = await get_case(s, case_id, lock=True)
    require_intake_for(actor, case)
    mediator = await s.get(User, data.mediator_id)
    if mediator is None or mediator.role != "mediator" or not mediator.active \
            or mediator.institution_id != case.institution_id:
        raise ValidationFailed("Choose an active mediator of this case's institution.",
                               fields={"mediator_id": "not a mediator of this institution"})
    previous = case.mediator_id
    await transition(s, actor, case, "assign", {"mediator_id": mediator.id, "mediator": mediator.name,
                                                 "previous_mediator_id": previous})
    case.mediator = mediator
    return case


async def close(s: AsyncSession, actor: Actor, case_id: int, data: CloseIn) -> Case:
    case = await get_case(s, case_id, lock=True)
    require_case_mediator(actor, case)
    live = (await s.execute(select(func.count()).select_from(MediationSession).where(
        MediationSession.case_id == case.id, MediationSession.status != "ended"))).scalar_one()
    if live:
        raise ValidationFailed("End the open mediation sessions first.", code="sessions_open")
    await transition(s, actor, case, "settle" if data.result == "settled" else "fail", {"note": data.note})
    return case


async def withdraw(s: AsyncSession, actor: Actor, case_id: int, data: WithdrawIn) -> Case:
    case = await get_case(s, case_id, lock=True)
    if actor.applicant_case_id != case.id:
        raise Unauthorized("Only the applicant can withdraw a case, with its access code.")
    await transition(s, actor, case, "withdraw", {"reason": data.reason})
    return case


async def archive(s: AsyncSession, actor: Actor, case_id: int) -> Case:
    case = await get_case(s, case_id, lock=True)
    require_intake_for(actor, case)
    await transition(s, actor, case, "archive")
    return case


async def list_cases(s: AsyncSession, actor: Actor, *, status: str | None = None, q: str | None = None,
                     page: int = 1, page_size: int = PAGE_SIZE, mine: bool = False) -> tuple[list[Case], int]:
    scope = case_scope(actor)
    query = select(Case)
    count = select(func.count()).select_from(Case)
    filters = []
    if scope is not None:
        filters.append(scope)
    if mine and actor.user and actor.user.role == "mediator":
        filters.append(Case.mediator_id == actor.user.id)
    if status:
        filters.append(Case.status.in_(status.split(",")))
    if q:
        like = f"%{q.strip()}%"
        party_match = select(Party.case_id).where(Party.name.like(like))
        filters.append(or_(Case.number.like(like), Case.title.like(like), Case.id.in_(party_match)))
    for f in filters:
        query = query.where(f)
        count = count.where(f)
    total = (await s.execute(count)).scalar_one()
    rows = (await s.execute(query.order_by(Case.created_at.desc(), Case.id.desc())
                            .offset((page - 1) * page_size).limit(page_size))).unique().scalars().all()
    return list(rows), total


async def mediator_workloads(s: AsyncSession, actor: Actor, institution_id: int | None = None) -> list[dict]:
    """Mediators with how many open cases each carries, for the assignment choice."""
    u = require_staff(actor, "intake", "admin")
    inst = institution_id if u.role == "admin" else u.institution_id
    open_count = (select(Case.mediator_id, func.count().label("n")).where(Case.status.in_(OPEN_STATUSES))
                  .group_by(Case.mediator_id).subquery())
    q = (select(User, func.coalesce(open_count.c.n, 0)).outerjoin(open_count, open_count.c.mediator_id == User.id)
         .where(User.role == "mediator", User.active.is_(True)))
    if inst is not None:
        q = q.where(User.institution_id == inst)
    rows = (await s.execute(q.order_by(User.name))).unique().all()
    return [{"id": m.id, "name": m.name or m.username, "institution_id": m.institution_id, "open_cases": n}
            for m, n in rows]


async def history(s: AsyncSession, case_id: int, *, include_access: bool = False) -> list[AuditEntry]:
    q = select(AuditEntry).where(AuditEntry.case_id == case_id)
    if not include_access:
        q = q.where(AuditEntry.action.not_in(ACCESS_ACTIONS))
    return list((await s.execute(q.order_by(AuditEntry.seq))).scalars().all())


async def view(s: AsyncSession, actor: Actor, case_id: int) -> Case:
    case = await get_case(s, case_id)
    require_view(actor, case)
    return case
