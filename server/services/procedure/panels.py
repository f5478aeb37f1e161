"""What the procedure parts of the portal pages show: read-only views built from the rules'
own lookups, with the viewer's permissions taken from the policy the services enforce."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import AppError
from server.core.models import Case, ConflictDeclaration, PartyCredential, RecusalRequest, Transcript, User
from server.core.policy import Actor, require_case_mediator, require_intake_for
from server.services import cases as case_svc
from server.services import sessions as session_svc
from server.services.notify import messages as notify
from server.services.procedure import deadlines
from server.services.procedure import rules as procedure
from server.services.queries import may


async def case_panel(s: AsyncSession, actor: Actor, case_id: int, now: dt.datetime) -> dict:
    """The procedure part of the staff case page; {} when the viewer may not see the case."""
    try:
        case = await case_svc.view(s, actor, case_id)
    except AppError:
        return {}
    overview = await procedure.case_overview(s, actor, case.id, now)
    # What this viewer may do comes from the policy the services enforce (server/core/policy.py).
    is_mediator = may(require_case_mediator, actor, case)
    is_intake = may(require_intake_for, actor, case)
    creds = {c.party_id: c.issued_at for c in (await s.execute(select(PartyCredential).where(
        PartyCredential.party_id.in_([p.id for p in case.parties] or [0])))).scalars()}
    contacts = {p.id: await procedure.contact_of(s, "party", p.id) for p in case.parties}
    sessions = await session_svc.list_sessions(s, case.id)
    plans = await procedure.plans_for(s, case.id)
    transcripts = {t.session_id: t for t in (await s.execute(select(Transcript).where(
        Transcript.case_id == case.id))).scalars()}
    mediators = (await case_svc.mediator_workloads(s, actor, case.institution_id)
                 if is_intake and any(r["status"] == "pending" for r in overview["recusals"]) else [])
    history = (await s.execute(select(ConflictDeclaration).where(ConflictDeclaration.case_id == case.id)
                               .order_by(ConflictDeclaration.id))).scalars().all()
    names = {u.id: (u.name or u.username) for u in (await s.execute(select(User).where(
        User.id.in_([d.mediator_id for d in history] or [0])))).unique().scalars()}
    party_names = {p.id: p.name for p in case.parties}
    return {
        "case_id": case.id, "status": case.status, "is_mediator": is_mediator, "is_intake": is_intake,
        "overview": overview,
        "parties": [{"id": p.id, "name": p.name, "side": p.side, "phone": bool(p.phone),
                     "code_issued_at": creds.get(p.id), "email": (contacts[p.id].email if contacts[p.id] else ""),
                     "lang": (contacts[p.id].lang if contacts[p.id] else ""),
                     "consent": next(c["consent"] for c in overview["consents"] if c["party_id"] == p.id)}
                    for p in case.parties],
        "party_names": party_names,
        "sessions": [{"id": x.id, "status": x.status, "scheduled_at": x.scheduled_at,
                      "plan": plans.get(x.id), "transcript": transcripts.get(x.id)} for x in sessions],
        "mediators": [m for m in mediators if m["id"] != case.mediator_id],
        "declarations": [{"mediator": names.get(d.mediator_id, ""), "conflict": d.conflict, "reason": d.reason,
                          "at": d.created_at} for d in history],
        "can_schedule": is_mediator and case.status in ("assigned", "in_mediation")
                        and overview["declaration"] is not None and not overview["declaration"]["conflict"],
        "sms_enabled": notify.config().sms_enabled,
    }


async def list_flags(s: AsyncSession, actor: Actor, now: dt.datetime) -> dict:
    """Deadline flags, undeclared conflicts and pending recusals for the staff lists."""
    rows = await deadlines.list_for(s, actor, now=now)
    flags: dict[int, list[dict]] = {}
    for case, d in rows:
        flags.setdefault(case.id, []).append(deadlines.flag(d, now))
    undeclared: set[int] = set()
    if actor.user.role == "mediator":
        mine = (await s.execute(select(Case).where(Case.mediator_id == actor.user.id,
                                                   Case.status.in_(("assigned", "in_mediation"))))
                ).unique().scalars().all()
        for c in mine:
            if await procedure.declaration_of(s, c) is None:
                undeclared.add(c.id)
    pending = {}
    if actor.user.role in ("intake", "admin"):
        for r in await procedure.recusals(s, actor, status="pending"):
            pending[r.case_id] = pending.get(r.case_id, 0) + 1
    return {"flags": flags, "undeclared": undeclared, "recusals": pending,
            "overdue": sum(1 for v in flags.values() for f in v if f["state"] == "overdue")}


async def lookup_panel(s: AsyncSession, case: Case) -> dict:
    """The procedure part of the applicant's /lookup page."""
    applicant = next(p for p in case.parties if p.side == "applicant")
    consent = await procedure.consent_of(s, applicant.id)
    plans = await procedure.plans_for(s, case.id)
    sessions = [x for x in await session_svc.list_sessions(s, case.id)
                if x.status != "ended" and (x.scheduled_at or x.id in plans)]
    reqs = [procedure.recusal_json(r) for r in (await s.execute(
        select(RecusalRequest).where(RecusalRequest.case_id == case.id,
                                               RecusalRequest.party_id == applicant.id)
        .order_by(RecusalRequest.id))).scalars()]
    contact = await procedure.contact_of(s, "party", applicant.id)
    return {"case_id": case.id, "status": case.status, "mediator": case.mediator.name if case.mediator else "",
            "consent": consent, "email": contact.email if contact else "",
            "sessions": [{"id": x.id, "status": x.status, "starts_at": plans[x.id].starts_at if x.id in plans else x.scheduled_at,
                          "minutes": plans[x.id].duration_minutes if x.id in plans else None} for x in sessions],
            "recusals": reqs, "can_recuse": case.mediator_id is not None and case.status in ("assigned", "in_mediation")
            and not any(r["status"] == "pending" for r in reqs)}
