"""Performance tracking (履行跟踪): the terms of an agreement in effect watched until they are carried out.

Rules (docs/procedure.md, "After the agreement"):
- when an agreement takes effect, each of its terms that a party must carry out becomes an
  obligation, due on the agreement's performance deadline. A term is taken as a party's
  obligation when it opens with that party's name (the templates write "{R}于…前向{A}支付…")
  and is not a closing clause ("…再无其他争议", "不再…"); the mediator corrects the obligor or
  the day, or withdraws a term that is no obligation, while nobody has reported on it;
- the obliged party is reminded before the last day (PERFORMANCE_REMINDER_DAYS, through the
  notification outbox); on the day after it, the parties concerned (the obligor and the other
  side) are asked to report;
- each party concerned reports "performed" (any time) or "not performed" (only after the last
  day) with their personal link or the applicant's access code; the latest report of each party
  counts, the same report twice is refused. The obligation's status follows the reports: the
  other side's word decides (performed / not performed), the obligor's own "performed" alone is
  ``claimed``, contradicting words are ``disputed``;
- a party reports only on obligations of their own case that concern them (``not_concerned``
  otherwise); every step is written to the audit chain.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from pydantic import StringConstraints
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import audit, events
from server.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from server.core.models import Case, Obligation, ObligationReport, Party, utcnow
from server.core.policy import Actor, case_scope, require_case_mediator, require_view
from server.core.schemas import Day, Id, Strict
from server.services.cases import get_case
from server.services.notify import messages as notify
from server.services.outcome import agreements as agr
from server.services.procedure import deadlines

STATUSES = ("open", "claimed", "performed", "not_performed", "disputed", "withdrawn")
# Closing clauses name a party first but oblige nobody to do anything.
CLOSING = re.compile(r"再无其他争议|再无争议|不再|互谅互让|和睦相处|本协议履行完毕后")
SOON_DAYS = 7  # "due soon" from this many days before the last day


class ReportIn(Strict):
    performed: bool
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] = ""


class ObligationPatch(Strict):
    """The mediator's correction of a watched term; fields left out keep their value."""

    obligor_party_id: Id | None = None
    due_on: Day | None = None
    withdrawn: bool | None = None


# --- which terms oblige whom ---------------------------------------------------------------------------

def _leading_names(term: str, parties: list[Party]) -> list[Party]:
    """The parties whose names open the term ("张三、李四于…"): the obliged party or parties."""
    text = term.lstrip("一二三四五六七八九十、.0123456789 ")
    found: list[Party] = []
    while True:
        match = next((p for p in sorted(parties, key=lambda p: -len(p.name)) if p.name and text.startswith(p.name)
                      and p not in found), None)
        if match is None:
            return found
        found.append(match)
        text = text[len(match.name):]
        if not text.startswith("、"):
            return found
        text = text[1:]


def derive(case: Case, terms: list[str]) -> list[tuple[int, str, Party]]:
    """(term number, text, obliged party) for every term that obliges a party; one row per obliged party."""
    out = []
    for i, term in enumerate(terms, start=1):
        if CLOSING.search(term):
            continue
        for p in _leading_names(term, list(case.parties)):
            out.append((i, term, p))
    return out


def day_start(d: dt.date) -> dt.datetime:
    """The first moment of a day in the centre's time zone, in UTC."""
    return dt.datetime.combine(d, dt.time(0, 0), tzinfo=deadlines.tz()).astimezone(dt.timezone.utc)


async def on_agreement_changed(s: AsyncSession, e: events.AgreementChanged) -> None:
    """In the transaction that put the agreement into effect (subscribed in server/system.py): its
    obligations start to be watched."""
    if e.what != "effective":
        return
    ag = await agr.get_for_case(s, e.case_id)
    if ag is None or ag.status != "effective":
        return
    case = await get_case(s, e.case_id)
    content = ag.content or {}
    due = content.get("performance_deadline")
    if not due:
        return
    due_on = dt.date.fromisoformat(due)
    existing = {o.term for o in (await s.execute(select(Obligation).where(Obligation.agreement_id == ag.id))).scalars()}
    seen: set[int] = set()
    for term, text, party in derive(case, list(content.get("terms") or [])):
        if term in existing or term in seen:
            continue  # one obligor per term is watched; the mediator corrects it when several share one
        seen.add(term)
        ob = Obligation(case_id=case.id, agreement_id=ag.id, term=term, text=text, obligor_party_id=party.id,
                        due_on=due_on.isoformat(), due_at=day_start(due_on + dt.timedelta(days=1)),
                        status="open", reminders={})
        s.add(ob)
        await s.flush()
        await audit.append(s, audit.SYSTEM, "obligation.created", case_id=case.id, data={
            "obligation_id": ob.id, "term": term, "obligor": party.name, "party_id": party.id,
            "due_on": ob.due_on, "text": text})


# --- reading ---------------------------------------------------------------------------------------------

async def for_case(s: AsyncSession, case_id: int) -> list[Obligation]:
    return list((await s.execute(select(Obligation).where(Obligation.case_id == case_id)
                                 .order_by(Obligation.term, Obligation.id))).scalars().all())


async def reports_for(s: AsyncSession, obligation_ids: list[int]) -> dict[int, list[ObligationReport]]:
    if not obligation_ids:
        return {}
    out: dict[int, list[ObligationReport]] = {}
    for r in (await s.execute(select(ObligationReport).where(ObligationReport.obligation_id.in_(obligation_ids))
                              .order_by(ObligationReport.id))).scalars():
        out.setdefault(r.obligation_id, []).append(r)
    return out


def latest(reports: list[ObligationReport]) -> dict[int, ObligationReport]:
    """Each party's latest report."""
    out: dict[int, ObligationReport] = {}
    for r in reports:
        out[r.party_id] = r
    return out


def concerned(case: Case, ob: Obligation) -> list[Party]:
    """Who reports on an obligation: the obliged party and every party of the other side."""
    obligor = next((p for p in case.parties if p.id == ob.obligor_party_id), None)
    if obligor is None:
        return []
    return [obligor] + [p for p in case.parties if p.side != obligor.side]


def status_from(ob: Obligation, reports: list[ObligationReport]) -> str:
    if ob.status == "withdrawn":
        return "withdrawn"
    last = latest(reports)
    own = last.get(ob.obligor_party_id)
    others = [r for pid, r in last.items() if pid != ob.obligor_party_id]
    if any(not r.performed for r in others):
        return "disputed" if own is not None and own.performed else "not_performed"
    if any(r.performed for r in others):
        return "performed"
    if own is not None:
        return "claimed" if own.performed else "not_performed"
    return "open"


def state(ob: Obligation, now: dt.datetime | None = None) -> str:
    """What the lists show: an open obligation is running, due_soon or overdue (awaiting reports);
    otherwise its status."""
    if ob.status != "open":
        return ob.status
    now = now or utcnow()
    if now >= ob.due_at:
        return "overdue"
    if now >= day_start(dt.date.fromisoformat(ob.due_on) - dt.timedelta(days=SOON_DAYS)):
        return "due_soon"
    return "running"


def view(ob: Obligation, case: Case, reports: list[ObligationReport], now: dt.datetime | None = None,
         *, me: int | None = None) -> dict:
    names = {p.id: p.name for p in case.parties}
    who = concerned(case, ob)
    last = latest(reports)
    d = {"id": ob.id, "case_id": ob.case_id, "term": ob.term, "text": ob.text, "obligor_party_id": ob.obligor_party_id,
         "obligor": names.get(ob.obligor_party_id, ""), "due_on": ob.due_on, "due_at": ob.due_at.isoformat(),
         "status": ob.status, "state": state(ob, now),
         "reports": [{"party_id": r.party_id, "name": names.get(r.party_id, ""), "performed": r.performed,
                      "note": r.note, "via": r.via, "at": r.created_at.isoformat()} for r in reports],
         "latest": {str(pid): r.performed for pid, r in last.items()},
         "concerned": [{"party_id": p.id, "name": p.name, "side": p.side} for p in who]}
    if me is not None:
        mine = last.get(me)
        past_due = (now or utcnow()) >= ob.due_at
        d["me"] = {"concerned": any(p.id == me for p in who), "obligor": me == ob.obligor_party_id,
                   "reported": None if mine is None else mine.performed,
                   "may_report_performed": ob.status != "withdrawn" and (mine is None or not mine.performed),
                   "may_report_not_performed": ob.status != "withdrawn" and past_due
                   and (mine is None or mine.performed)}
        if not d["me"]["concerned"]:
            d["me"]["may_report_performed"] = d["me"]["may_report_not_performed"] = False
    return d


async def case_views(s: AsyncSession, case: Case, now: dt.datetime | None = None, *, me: int | None = None) -> list[dict]:
    obs = await for_case(s, case.id)
    reps = await reports_for(s, [o.id for o in obs])
    return [view(o, case, reps.get(o.id, []), now, me=me) for o in obs]


async def staff_list(s: AsyncSession, actor: Actor, case_id: int, now: dt.datetime | None = None) -> list[dict]:
    case = await get_case(s, case_id)
    require_view(actor, case)
    return await case_views(s, case, now)


# --- reports ---------------------------------------------------------------------------------------------

async def _obligation_of(s: AsyncSession, case: Case, obligation_id: int, *, lock: bool = False) -> Obligation:
    q = select(Obligation).where(Obligation.id == obligation_id)
    if lock:
        q = q.with_for_update()
    ob = (await s.execute(q)).scalar_one_or_none()
    if ob is None or ob.case_id != case.id:
        raise NotFound("No such obligation in this case.")
    return ob


async def report(s: AsyncSession, proof: agr.PartyProof, obligation_id: int, data: ReportIn,
                 now: dt.datetime | None = None) -> Obligation:
    """A party's word on an obligation of their case that concerns them."""
    now = now or utcnow()
    case = await get_case(s, proof.case_id, lock=True)
    ob = await _obligation_of(s, case, obligation_id, lock=True)
    if ob.status == "withdrawn":
        raise Conflict("The mediator no longer tracks this term.", code="obligation_withdrawn")
    if not any(p.id == proof.party_id for p in concerned(case, ob)):
        raise Forbidden("This obligation is between other parties of the case.", code="not_concerned")
    if not data.performed and now < ob.due_at:
        raise Conflict(f"It can be reported as not performed only after its last day ({ob.due_on}).",
                       code="not_due", fields={"due_on": ob.due_on})
    reports = (await reports_for(s, [ob.id])).get(ob.id, [])
    mine = latest(reports).get(proof.party_id)
    if mine is not None and mine.performed == data.performed:
        raise Conflict("You have already reported this.", code="already_reported",
                       fields={"performed": mine.performed})
    r = ObligationReport(obligation_id=ob.id, case_id=case.id, party_id=proof.party_id, performed=data.performed,
                         note=data.note, via=proof.via, created_at=now)
    s.add(r)
    await s.flush()
    before = ob.status
    ob.status = status_from(ob, reports + [r])
    ob.updated_at = now
    await audit.append(s, proof.ref(), "obligation.reported", case_id=case.id, data={
        "obligation_id": ob.id, "term": ob.term, "party_id": proof.party_id, "name": proof.name,
        "performed": data.performed, "note": data.note, "via": proof.via, "from_status": before,
        "status": ob.status})
    if ob.status in ("not_performed", "disputed") and before != ob.status:
        cfg = notify.config()
        await notify.send(s, "obligation_not_performed", await notify.mediator_recipients(s, case.mediator_id),
                          {"number": case.number, "title": case.title, "term": _short(ob.text),
                           "due_on": ob.due_on, "case_url": f"{cfg.public_url}/staff/cases/{case.id}"},
                          key=f"obligation:{ob.id}:report:{r.id}", case_id=case.id)
    return ob


async def correct(s: AsyncSession, actor: Actor, case_id: int, obligation_id: int, data: ObligationPatch) -> Obligation:
    """The mediator corrects whom a term obliges, its last day, or withdraws it (before any report)."""
    case = await get_case(s, case_id, lock=True)
    require_case_mediator(actor, case)
    ob = await _obligation_of(s, case, obligation_id, lock=True)
    if (await reports_for(s, [ob.id])).get(ob.id):
        raise Conflict("A party has reported on it; it can no longer be changed.", code="already_reported")
    changes: dict = {}
    if data.obligor_party_id is not None and data.obligor_party_id != ob.obligor_party_id:
        party = next((p for p in case.parties if p.id == data.obligor_party_id), None)
        if party is None:
            raise ValidationFailed("This party is not in the case.",
                                   fields={"obligor_party_id": "not a party of this case"})
        changes["obligor"] = party.name
        ob.obligor_party_id = party.id
    if data.due_on is not None and data.due_on.isoformat() != ob.due_on:
        changes["due_on"] = data.due_on.isoformat()
        ob.due_on = data.due_on.isoformat()
        ob.due_at = day_start(data.due_on + dt.timedelta(days=1))
        ob.reminders, ob.report_asked_at = {}, None
    if data.withdrawn is not None and data.withdrawn != (ob.status == "withdrawn"):
        changes["withdrawn"] = data.withdrawn
        ob.status = "withdrawn" if data.withdrawn else "open"
    if not changes:
        raise Conflict("Nothing to change.", code="nothing_changed")
    ob.updated_at = utcnow()
    await audit.append(s, actor.ref(), "obligation.changed", case_id=case.id,
                       data={"obligation_id": ob.id, "term": ob.term, **changes})
    return ob


def eligible_for_enforcement(views: list[dict], party_id: int) -> list[dict]:
    """Obligations another party owes this party that this party reported as not performed."""
    return [v for v in views if v["status"] in ("not_performed", "disputed") and v["obligor_party_id"] != party_id
            and v["latest"].get(str(party_id)) is False
            and any(c["party_id"] == party_id for c in v["concerned"])]


# --- reminders, report requests, flags ---------------------------------------------------------------------

def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


async def scan(db, reminder_days: tuple[int, ...] = (7, 1), now: dt.datetime | None = None) -> dict[str, int]:
    """Remind the obliged party before the last day; once it has passed, ask the parties concerned to report."""
    now = now or utcnow()
    counts = {"reminded": 0, "asked": 0}
    horizon = now + dt.timedelta(days=max(reminder_days or (0,)) + 1)
    cond = (Obligation.status == "open", Obligation.report_asked_at.is_(None), Obligation.due_at <= horizon)
    async with db.read() as s:  # most rounds find nothing: no write transaction for them
        if not (await s.execute(select(Obligation.id).where(*cond).limit(1))).first():
            return counts
    cfg = notify.config()
    async with db.session() as s:
        q = select(Obligation).where(*cond)
        if db.is_postgres:
            q = q.with_for_update(skip_locked=True)  # several nodes may scan at once
        for ob in (await s.execute(q)).scalars().all():
            case = await s.get(Case, ob.case_id)
            ctx = {"number": case.number, "title": case.title, "term": _short(ob.text), "due_on": ob.due_on}
            if now >= ob.due_at:
                ob.report_asked_at = now
                people = concerned(case, ob)
                await audit.append(s, audit.SYSTEM, "obligation.due", case_id=case.id, data={
                    "obligation_id": ob.id, "term": ob.term, "due_on": ob.due_on,
                    "asked": [p.name for p in people]})
                await notify.send(s, "obligation_report", await notify.party_recipients(s, people), ctx,
                                  key=f"obligation:{ob.id}:report", case_id=case.id)
                counts["asked"] += 1
                continue
            last = dt.date.fromisoformat(ob.due_on)
            today = now.astimezone(deadlines.tz()).date()
            left = (last - today).days
            due = [d for d in reminder_days if left <= d and str(d) not in (ob.reminders or {})]
            if not due:
                continue
            ob.reminders = {**(ob.reminders or {}), **{str(d): now.isoformat() for d in due}}
            obligor = [p for p in case.parties if p.id == ob.obligor_party_id]
            await audit.append(s, audit.SYSTEM, "obligation.reminded", case_id=case.id, data={
                "obligation_id": ob.id, "term": ob.term, "days_left": left, "due_on": ob.due_on,
                "obligor": obligor[0].name if obligor else ""})
            await notify.send(s, "obligation_due_soon", await notify.party_recipients(s, obligor),
                              {**ctx, "days_left": left, "case_url": f"{cfg.public_url}/lookup"},
                              key=f"obligation:{ob.id}:remind:{min(due)}", case_id=case.id)
            counts["reminded"] += 1
    return counts


async def flags(s: AsyncSession, actor: Actor, now: dt.datetime | None = None) -> dict[int, dict[str, int]]:
    """Per case the viewer may list: how many obligations are overdue (no report yet) and not performed."""
    now = now or utcnow()
    q = select(Obligation).join(Case, Case.id == Obligation.case_id).where(
        Obligation.status.in_(("open", "claimed", "not_performed", "disputed")))
    scope = case_scope(actor)
    if scope is not None:
        q = q.where(scope)
    out: dict[int, dict[str, int]] = {}
    for ob in (await s.execute(q)).scalars():
        st = state(ob, now)
        if st in ("running", "due_soon"):
            continue
        c = out.setdefault(ob.case_id, {})
        c[st] = c.get(st, 0) + 1
    return out
