"""Demo data for `mediation serve --demo`: institutions, staff, experts and a few cases."""
from __future__ import annotations

from sqlalchemy import func, select

from server.infra.db import Database
from server.core.models import Institution
from server.core.schemas import ApplicantIn, CaseIn, ExpertIn, InstitutionIn, RespondentIn, UserIn
from server.services import cases, directory
from server.infra.files import FileStore

DEMO_PASSWORD = "demo-pass-2026"

INSTITUTIONS = [
    ("县矛盾纠纷多元化解中心", "administrative", "城关镇", "ZX"),
    ("城关镇人民调解委员会", "people", "城关镇", "CG"),
    ("县劳动人事争议调解委员会", "industry", "全县", "LD"),
]
STAFF = [
    ("admin", "admin", None, "系统管理员"),
    ("intake", "intake", 0, "受理员 王芳"),
    ("mediator", "mediator", 0, "调解员 李明"),
    ("mediator2", "mediator", 0, "调解员 陈静"),
    ("intake2", "intake", 1, "受理员 赵强"),
    ("mediator3", "mediator", 1, "调解员 周涛"),
    ("clerk", "clerk", None, "书记员 孙丽"),
]
EXPERTS = [
    ("刘建国", "labour", "county", "县人社局"),
    ("黄海", "fishery", "town", "渔业协会"),
    ("吴医生", "medical", "county", "县人民医院"),
    ("郑工", "construction", "county", "县住建局"),
    ("何船长", "shipping", "town", "海事服务站"),
]
CASES = [
    ("mediation", "labour", "工地拖欠工资纠纷", "在县城某工地务工四个月，包工头拖欠工资两万三千元，多次讨要未果。", "张伟", "13800001111", "某建筑劳务公司"),
    ("mediation", "neighbour", "邻里排水纠纷", "邻居加盖房屋后雨水直排我家院内，协商未果，请求调解。", "王秀英", "13900002222", "李建军"),
    ("petition", "property", "征地补偿款发放问题", "村里征地补偿款发放标准不统一，请求有关部门核查。", "刘洋", "13700003333", "某村民委员会"),
]


async def seed(db: Database, store: FileStore) -> list[str] | None:
    """Seed an empty database; returns the login lines, or None when data exists already."""
    async with db.session() as s:
        if (await s.execute(select(func.count()).select_from(Institution))).scalar_one():
            return None
        insts = [await directory.add_institution(s, None, InstitutionIn(name=n, kind=k, area=a, prefix=p))
                 for n, k, a, p in INSTITUTIONS]
        lines = []
        for username, role, inst_idx, name in STAFF:
            inst_id = insts[inst_idx].id if inst_idx is not None else None
            await directory.add_user(s, None, UserIn(username=username, password=DEMO_PASSWORD, role=role,
                                                     institution_id=inst_id, name=name))
            lines.append(f"  {role:<9} {username:<10} / {DEMO_PASSWORD}   {name}")
        for name, spec, level, org in EXPERTS:
            await directory.add_expert(s, None, ExpertIn(name=name, specialty=spec, level=level, organisation=org))
        for typ, cat, title, desc, who, phone, resp in CASES:
            data = CaseIn(type=typ, category=cat, title=title, description=desc, institution_id=insts[0].id,
                          applicant=ApplicantIn(name=who, phone=phone), respondents=[RespondentIn(name=resp)])
            case, code = await cases.file_case(s, store, data, [], max_bytes=1, max_files=0)
            lines.append(f"  case {case.number}: applicant phone {phone}, access code {code}")
        return lines
