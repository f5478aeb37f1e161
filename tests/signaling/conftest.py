"""A real server (aiohttp on a loopback port) with a case, a session and join links."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from server.core.models import User
from server.core.policy import Actor
from server.core.schemas import AssignIn, InviteIn, SessionIn
from server.services import cases as case_svc
from server.services import sessions as session_svc
from tests.api.helpers import case_body, seed
from tests.rooms.clients import Media


@pytest.fixture(scope="session")
def media() -> Media:
    return Media()


@dataclass
class Live:
    url: str
    app: object
    db: object
    settings: object
    session_id: int
    room_id: str
    case_id: int
    party_ids: list[int]
    mediator: Actor

    async def token(self, role: str, **kw) -> str:
        data = InviteIn(role=role, **kw)
        async with self.db.session() as s:
            _, token = await session_svc.create_invite(s, self.mediator, self.session_id, data,
                                                       secret=self.settings.secret_key, default_seconds=3600)
        return token


@pytest.fixture
def settings(settings):
    """These suites are about the room, not the procedure (tests/procedure has that): identity checks
    off, as a demo deployment has them (IDENTITY_CHECK=off); consent and notices still apply."""
    settings.identity_check = False
    return settings


@pytest.fixture
def db_url(request, tmp_path, sqlite_template):
    """SQLite; a test that must hold on PostgreSQL too parametrizes db_url (indirect) with both."""
    import shutil
    if getattr(request, "param", "sqlite") == "postgresql":
        from tests.conftest import _reset_pg, run_sync
        url = request.getfixturevalue("pg_database")
        run_sync(_reset_pg(url))
        return url
    path = tmp_path / "test.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def live(aiohttp_server, settings, db):
    from server.http.app import create_app

    app = create_app(settings, db=db)
    server = await aiohttp_server(app, host="127.0.0.1")
    w = await seed(db)
    async with db.session() as s:
        admin = Actor(user=await s.get(User, w.users["admin"]))
        mediator = Actor(user=await s.get(User, w.users["mediator"]))
        from server.core.schemas import CaseIn
        case, _ = await case_svc.file_case(s, app["evidence_store"], CaseIn.model_validate(case_body(
            w.inst_a, respondents=[{"name": "李四", "phone": "13900002222"}])), [], max_bytes=1, max_files=0)
        await case_svc.accept(s, admin, case.id)
        await case_svc.assign(s, admin, case.id, AssignIn(mediator_id=w.users["mediator"]))
        sess = await session_svc.open_session(s, mediator, case.id, SessionIn())
        parties = [p.id for p in case.parties]
    return Live(str(server.make_url("")).rstrip("/"), app, db, settings, sess.id, sess.room_id, case.id, parties,
                mediator)
