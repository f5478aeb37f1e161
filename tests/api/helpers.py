"""Seeding and request helpers for the API tests."""
from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func, select

from server.core.models import Base
from server.core.schemas import ExpertIn, InstitutionIn, UserIn
from server.services import directory

PASSWORD = "correct-horse-42"


@dataclass
class World:
    inst_a: int
    inst_b: int
    users: dict[str, int]
    expert: int


async def seed(db) -> World:
    """Two institutions, one account of every role (plus a second mediator and an outsider)."""
    async with db.session() as s:
        a = await directory.add_institution(s, None, InstitutionIn(name="城关镇人民调解委员会", prefix="CG"))
        b = await directory.add_institution(s, None, InstitutionIn(name="县劳动人事争议调解委员会", prefix="LD"))
        spec = {
            "admin": ("admin", None), "intake": ("intake", a.id), "mediator": ("mediator", a.id),
            "mediator2": ("mediator", a.id), "clerk": ("clerk", a.id), "intake_b": ("intake", b.id),
            "mediator_b": ("mediator", b.id), "county_clerk": ("clerk", None),
        }
        users = {}
        for username, (role, inst) in spec.items():
            u = await directory.add_user(s, None, UserIn(username=username, password=PASSWORD, role=role,
                                                         institution_id=inst, name=f"{username} 名"))
            users[username] = u.id
        e = await directory.add_expert(s, None, ExpertIn(name="刘建国", specialty="labour"))
        return World(a.id, b.id, users, e.id)


async def login(client, username: str) -> dict:
    r = await client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status == 200, await r.text()
    return {"Authorization": f"Bearer {(await r.json())['token']}"}


async def row_counts(db) -> dict[str, int]:
    """Rows per table (staff sessions left out: logging in adds one), to show a refusal wrote nothing."""
    async with db.session() as s:
        return {t.name: (await s.execute(select(func.count()).select_from(t))).scalar_one()
                for t in Base.metadata.sorted_tables if t.name != "staff_sessions"}


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


async def portal_login(client, username: str) -> str:
    """Log in through the portal's form (the session cookie replaces any other); returns the page's CSRF token."""
    client.session.cookie_jar.clear()
    r = await client.post("/login", data={"username": username, "password": PASSWORD, "next": "/staff",
                                          "csrf_token": csrf_of(await (await client.get("/login")).text())},
                          allow_redirects=False)
    assert r.status == 303, await r.text()
    return csrf_of(await (await client.get("/admin/experts")).text())


def case_body(institution_id: int, **over) -> dict:
    body = {
        "type": "mediation", "category": "labour", "title": "拖欠工资纠纷",
        "description": "包工头拖欠四个月工资共计两万三千元。", "institution_id": institution_id,
        "applicant": {"name": "张伟", "phone": "13800001111", "id_number": "33010219800101123X"},
        "respondents": [{"name": "某劳务公司", "phone": "0571-8888888"}],
    }
    body.update(over)
    return body


async def file_case(client, institution_id: int, **over) -> dict:
    r = await client.post("/api/v1/cases", json=case_body(institution_id, **over))
    assert r.status == 201, await r.text()
    return await r.json()


def png_bytes() -> bytes:
    """A valid 1x1 PNG."""
    return bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000" "1f15c4890000000d49444154789c6360000002"
        "0000050001e226059b0000000049454e44ae426082")
