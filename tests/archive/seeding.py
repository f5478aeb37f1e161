"""Cases with chosen timestamps, made through the real services (so the audit chain is genuine).

The audit log's clock is replaced by a settable one while seeding (server.audit.utcnow), and
the few timestamps the services take from the wall clock (case filing time, session start and
end) are set to the chosen ones afterwards. Access codes skip argon2 (it is slow on purpose).
"""
from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from server.core import audit
from server.core.models import Case, User
from server.core.policy import Actor
from server.core.schemas import ApplicantIn, AssignIn, CaseIn, CloseIn, RejectIn, RespondentIn, SessionIn, WithdrawIn
from server.services import cases as case_svc
from server.services import sessions as session_svc
from server.infra.files import FileStore

UTC = dt.timezone.utc


@dataclass
class Spec:
    filed: dt.datetime
    inst: str  # "a" | "b"
    type: str = "mediation"
    category: str = "labour"
    applicant: str = "张伟"
    respondent: str = "某公司"
    reject_after_h: float | None = None
    accept_after_h: float | None = None
    mediator: str | None = None  # helpers' usernames: mediator, mediator2 (inst a), mediator_b (inst b)
    assign_after_h: float = 1.0
    sessions: list[tuple[float, float, float]] = field(default_factory=list)  # (open after h, start after min, minutes)
    outcome: str | None = None  # settle | fail
    outcome_after_h: float = 2.0
    archive: bool = False
    withdraw: bool = False
    # filled in while seeding
    id: int | None = None
    number: str | None = None
    times: dict = field(default_factory=dict)


class Clock:
    def __init__(self):
        self.now = dt.datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self):
        return self.now


async def _fast_hash(value: str) -> str:
    return "fast$" + value


def patch(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(audit, "utcnow", clock)
    monkeypatch.setattr(case_svc, "hash_secret_async", _fast_hash)
    return clock


async def seed_cases(db, world, specs: list[Spec], clock: Clock, store: FileStore) -> None:
    for sp in specs:
        async with db.session() as s:
            admin = Actor(user=await s.get(User, world.users["admin"]))
            inst = world.inst_a if sp.inst == "a" else world.inst_b
            clock.now = sp.filed
            data = CaseIn(type=sp.type, category=sp.category, title=f"{sp.category} 纠纷", description="测试用案件描述。",
                          institution_id=inst, applicant=ApplicantIn(name=sp.applicant, phone="13800001111"),
                          respondents=[RespondentIn(name=sp.respondent)])
            case, _code = await case_svc.file_case(s, store, data, [], max_bytes=1, max_files=0)
            case.created_at = sp.filed
            sp.id, sp.number = case.id, case.number
            t = sp.filed
            if sp.reject_after_h is not None:
                clock.now = t = t + dt.timedelta(hours=sp.reject_after_h)
                await case_svc.reject(s, admin, case.id, RejectIn(reason="不属于受理范围"))
            if sp.accept_after_h is not None:
                clock.now = t = t + dt.timedelta(hours=sp.accept_after_h)
                await case_svc.accept(s, admin, case.id)
                sp.times["accept"] = t
                if sp.mediator:
                    clock.now = t = t + dt.timedelta(hours=sp.assign_after_h)
                    await case_svc.assign(s, admin, case.id, AssignIn(mediator_id=world.users[sp.mediator]))
                    med = Actor(user=await s.get(User, world.users[sp.mediator]))
                    for open_h, start_min, minutes in sp.sessions:
                        clock.now = t = t + dt.timedelta(hours=open_h)
                        sess = await session_svc.open_session(s, med, case.id, SessionIn())
                        sp.times.setdefault("first_session", t)
                        start = t + dt.timedelta(minutes=start_min)
                        end = start + dt.timedelta(minutes=minutes)
                        sess.status, sess.started_at = "live", start
                        await s.flush()
                        clock.now = t = end
                        await session_svc.end_session(s, med, sess.id)
                        sess.started_at, sess.ended_at = start, end
                    if sp.outcome:
                        clock.now = t = t + dt.timedelta(hours=sp.outcome_after_h)
                        await case_svc.close(s, med, case.id, CloseIn(result="settled" if sp.outcome == "settle" else "failed"))
                        sp.times["resolution"] = t
                        if sp.archive:
                            clock.now = t = t + dt.timedelta(hours=5)
                            await case_svc.archive(s, admin, case.id)
            if sp.withdraw:
                clock.now = t = t + dt.timedelta(hours=3)
                await case_svc.withdraw(s, Actor(applicant_case_id=case.id, applicant_name=sp.applicant), case.id,
                                        WithdrawIn(reason=""))
            await s.flush()


def analytics_specs() -> list[Spec]:
    """About forty cases from January to 20 June 2026: every status, both institutions, several
    sessions, and labour disputes rising sharply in June."""
    rnd = random.Random(11)
    specs: list[Spec] = []
    cats = ["labour", "family", "neighbour", "property", "consumer"]
    for i in range(30):
        month = 1 + i % 5  # January .. May
        filed = dt.datetime(2026, month, 1 + (i * 7) % 27, 2 + i % 10, 15, tzinfo=UTC)
        inst = "a" if i % 3 else "b"
        mediator = ("mediator" if i % 2 else "mediator2") if inst == "a" else "mediator_b"
        sp = Spec(filed=filed, inst=inst, type=["mediation", "petition", "suggestion"][i % 3 if i % 4 else 0],
                  category=cats[i % 5], applicant=f"申请人{i:02d}")
        kind = i % 6
        if kind == 0:
            pass  # stays filed
        elif kind == 1:
            sp.reject_after_h = 5 + i
        else:
            sp.accept_after_h = rnd.choice([2, 6, 12, 24, 30, 48]) + i / 10
            if kind >= 3:
                sp.mediator = mediator
                sp.assign_after_h = rnd.choice([1, 3, 8])
            if kind >= 4:
                sp.sessions = [(rnd.choice([20, 40, 70]), rnd.choice([5, 30]), rnd.choice([30, 45, 90]))]
                if i % 4 == 0:
                    sp.sessions.append((30, 10, 60))
                sp.outcome = "settle" if i % 5 != 2 else "fail"
                sp.outcome_after_h = rnd.choice([1, 10, 50])
                sp.archive = i % 7 == 0
            if kind == 2 and i % 4 == 2:
                sp.withdraw = True
        specs.append(sp)
    # June (to the 20th): a surge of labour cases; one family case.
    for k in range(7):
        specs.append(Spec(filed=dt.datetime(2026, 6, 2 + k * 2, 3, 0, tzinfo=UTC), inst="a", category="labour",
                          applicant=f"欧阳{k}", accept_after_h=4 + k, mediator="mediator", sessions=[(24, 15, 50 + k)]
                          if k % 2 == 0 else []))
    specs.append(Spec(filed=dt.datetime(2026, 6, 5, 6, 0, tzinfo=UTC), inst="b", category="family"))
    # A filing late on 28 February UTC is 1 March in the centre (UTC+8): it counts for March.
    specs.append(Spec(filed=dt.datetime(2026, 2, 28, 17, 30, tzinfo=UTC), inst="a", category="neighbour",
                      accept_after_h=3))
    # Outside the range (filed after 20 June, local time): not counted.
    specs.append(Spec(filed=dt.datetime(2026, 6, 20, 16, 30, tzinfo=UTC), inst="a", category="labour"))
    return specs


def case_status(sp: Spec) -> str:
    if sp.withdraw:
        return "withdrawn"
    if sp.reject_after_h is not None:
        return "rejected"
    if sp.accept_after_h is None:
        return "filed"
    if sp.outcome:
        return "archived" if sp.archive else ("settled" if sp.outcome == "settle" else "failed")
    if sp.sessions:
        return "in_mediation"
    return "assigned" if sp.mediator else "accepted"


__all__ = ["Spec", "Clock", "patch", "seed_cases", "analytics_specs", "case_status", "Case"]
