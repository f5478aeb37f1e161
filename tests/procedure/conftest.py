"""A real server on a loopback port (aiohttp + socket.io) with a filed, accepted and assigned case,
and plain socket.io clients (no media: the procedure happens before media starts)."""
from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

import pytest
import socketio

from server.core.models import User
from server.core.policy import Actor
from server.core.schemas import AssignIn, CaseIn, InviteIn, SessionIn
from server.services import cases as case_svc
from server.services.notify import messages as notify
from server.services import sessions as session_svc
from tests.api.helpers import case_body, seed

APPLICANT_ID = "33010219800101123X"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def db_url(request, tmp_path, sqlite_template):
    """SQLite unless a test asks for both (parametrize db_url indirectly)."""
    import shutil
    if getattr(request, "param", "sqlite") == "postgresql":
        from tests.conftest import _reset_pg
        url = request.getfixturevalue("pg_database")
        asyncio.run(_reset_pg(url))
        return url
    path = tmp_path / "test.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(autouse=True)
def _notify_defaults(settings):
    """Each test starts with the development adapter in its own data dir (no gateway, no SMTP)."""
    notify.configure(notify.NotifyConfig(public_url=settings.public_url, outbox_dir=settings.data_dir / "outbox"))
    yield
    notify.configure(notify.NotifyConfig(public_url=settings.public_url, outbox_dir=settings.data_dir / "outbox"))


@dataclass
class World:
    url: str
    app: object
    db: object
    settings: object
    w: object
    case_id: int
    number: str
    access_code: str
    session_id: int
    applicant_id: int
    respondent_id: int
    admin: Actor
    intake: Actor
    mediator: Actor
    clients: list = field(default_factory=list)

    async def token(self, role: str, session_id: int | None = None, **kw) -> str:
        async with self.db.session() as s:
            _, token = await session_svc.create_invite(s, self.mediator, session_id or self.session_id,
                                                       InviteIn(role=role, **kw), secret=self.settings.secret_key,
                                                       default_seconds=3600)
        return token

    async def client(self, lang: str = "zh-CN") -> "Client":
        c = Client(self.url, lang)
        await c.connect()
        self.clients.append(c)
        return c


class Client:
    """A participant's socket.io connection that records server events."""

    def __init__(self, url: str, lang: str):
        self.url = url
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: dict[str, list] = {}
        self.lang = lang
        for name in ("procedure.status", "transcript.entry", "transcript.review", "transcript.signoff",
                     "transcript.finalized", "room.state", "lobby.waiting"):
            self.sio.on(name, self._recorder(name))

    def _recorder(self, name):
        async def record(data=None):
            self.events.setdefault(name, []).append(data)
        return record

    async def connect(self) -> None:
        await self.sio.connect(self.url, socketio_path="socket.io", transports=["websocket"],
                               headers={"Accept-Language": self.lang})

    async def call(self, event: str, data=None) -> dict:
        return await self.sio.call(event, data if data is not None else {}, timeout=10)

    resume: str | None = None  # the device's secret from the last join ack (docs/protocol.md)

    async def join(self, token: str, resume: str | None = None) -> dict:
        resume = resume or self.resume
        ack = await self.call("join", {"token": token, **({"resume": resume} if resume else {})})
        if ack.get("ok") and ack.get("resume"):
            self.resume = ack["resume"]
        return ack

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()


async def wait_for(predicate, timeout: float = 5.0, what: str = "condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def make_world(app, db, settings, url: str) -> World:
    w = await seed(db)
    async with db.session() as s:
        admin = Actor(user=await s.get(User, w.users["admin"]))
        intake = Actor(user=await s.get(User, w.users["intake"]))
        mediator = Actor(user=await s.get(User, w.users["mediator"]))
        body = case_body(w.inst_a, respondents=[{"name": "李四", "phone": "13900002222"}])
        case, code = await case_svc.file_case(s, app["evidence_store"], CaseIn.model_validate(body), [],
                                              max_bytes=1, max_files=0)
        await case_svc.accept(s, intake, case.id)
        await case_svc.assign(s, intake, case.id, AssignIn(mediator_id=w.users["mediator"]))
        sess = await session_svc.open_session(s, mediator, case.id, SessionIn())
        applicant = next(p for p in case.parties if p.side == "applicant")
        respondent = next(p for p in case.parties if p.side == "respondent")
        return World(url, app, db, settings, w, case.id, case.number, code, sess.id, applicant.id, respondent.id,
                     admin, intake, mediator)


@pytest.fixture
async def world(aiohttp_server, settings, db):
    from server.http.app import create_app
    app = create_app(settings, db=db)
    server = await aiohttp_server(app, host="127.0.0.1")
    wd = await make_world(app, db, settings, str(server.make_url("")).rstrip("/"))
    yield wd
    for c in wd.clients:
        await c.close()
