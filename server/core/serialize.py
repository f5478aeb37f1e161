"""JSON shapes of the domain objects, shared by the API and the pages."""
from __future__ import annotations

from server.core.models import AuditEntry, Case, Evidence, Expert, Institution, Invite, MediationSession, Party, User


def iso(v):
    return v.isoformat() if v is not None else None


def institution(i: Institution) -> dict:
    return {"id": i.id, "name": i.name, "kind": i.kind, "area": i.area, "prefix": i.prefix, "active": i.active}


def user(u: User) -> dict:
    return {"id": u.id, "username": u.username, "name": u.name, "role": u.role,
            "institution_id": u.institution_id, "active": u.active}


def expert(e: Expert) -> dict:
    return {"id": e.id, "name": e.name, "specialty": e.specialty, "level": e.level,
            "organisation": e.organisation, "active": e.active}


def party(p: Party, *, full: bool) -> dict:
    d = {"id": p.id, "side": p.side, "name": p.name}
    if full:
        d.update(phone=p.phone, id_number=p.id_number, address=p.address)
    return d


def evidence(e: Evidence) -> dict:
    return {"id": e.id, "filename": e.filename, "content_type": e.content_type, "size": e.size,
            "sha256": e.sha256, "created_at": iso(e.created_at)}


def case_summary(c: Case) -> dict:
    return {"id": c.id, "number": c.number, "type": c.type, "category": c.category, "title": c.title,
            "status": c.status, "institution_id": c.institution_id,
            "institution": c.institution.name if c.institution else None,
            "mediator_id": c.mediator_id, "mediator": (c.mediator.name if c.mediator else None),
            "created_at": iso(c.created_at), "updated_at": iso(c.updated_at)}


def case_full(c: Case, *, staff: bool) -> dict:
    d = case_summary(c)
    d["description"] = c.description
    d["parties"] = [party(p, full=staff) for p in c.parties]
    d["evidence"] = [evidence(e) for e in c.evidence]
    return d


def session(s: MediationSession) -> dict:
    return {"id": s.id, "case_id": s.case_id, "room_id": s.room_id, "status": s.status,
            "scheduled_at": iso(s.scheduled_at), "created_at": iso(s.created_at),
            "started_at": iso(s.started_at), "ended_at": iso(s.ended_at)}


def invite(i: Invite, accompanies: str | None = None) -> dict:
    """`accompanies`: the name of the party an interpreter's or support person's link is for
    (their `party_id`); None for every other role."""
    return {"id": i.id, "role": i.role, "name": i.name, "party_id": i.party_id, "expert_id": i.expert_id,
            "accompanies": {"party_id": i.party_id, "name": accompanies} if accompanies is not None else None,
            "single_use": i.single_use, "specialty": i.specialty, "organisation": i.organisation,
            "direct": i.direct, "judge": i.judge, "created_at": iso(i.created_at), "expires_at": iso(i.expires_at),
            "used_at": iso(i.used_at), "revoked_at": iso(i.revoked_at)}


def audit_entry(e: AuditEntry, *, public: bool = False) -> dict:
    d = {"seq": e.seq, "action": e.action, "at": iso(e.created_at), "actor_type": e.actor_type,
         "actor": e.actor_name}
    if not public:
        d.update(data=e.data, session_id=e.session_id, hash=e.hash, prev_hash=e.prev_hash)
    else:
        # What an applicant sees of their case's history: the step and, for decisions, the reason.
        d["data"] = {k: v for k, v in e.data.items() if k in ("from", "to", "reason", "number")}
    return d
