"""Input fuzzing: hypothesis profiles and a real server, seeded, on a loop thread of its own.

Profiles (HYPOTHESIS_PROFILE; FUZZ_EXAMPLES overrides the examples per operation or event):
`ci` (the default) is small and derandomized, so CI's run is the same every time and fits its
budget; `bench` is bench/fuzz.py's longer, random run. Neither shrinks: a failure is reported
as found (the suite keeps going and lists every failing route and event at the end).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, Phase, settings as hsettings

from tests.fuzz.surface import LoopThread

_COMMON = dict(deadline=None, database=None, print_blob=False,
               phases=[Phase.explicit, Phase.generate],
               suppress_health_check=list(HealthCheck))
hsettings.register_profile("ci", max_examples=int(os.environ.get("FUZZ_EXAMPLES", 8)), derandomize=True, **_COMMON)
hsettings.register_profile("bench", max_examples=int(os.environ.get("FUZZ_EXAMPLES", 150)), **_COMMON)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")


def fuzz_settings(ci_examples: int | None = None):
    """The active profile's settings (applied to each operation's or event's own @given).
    `ci_examples` lowers the count of the `ci` profile for a suite whose examples cost more
    (unless FUZZ_EXAMPLES says otherwise); bench/fuzz.py's long run is not lowered."""
    base = hsettings.get_profile(PROFILE)
    if PROFILE == "ci" and ci_examples is not None and "FUZZ_EXAMPLES" not in os.environ:
        return hsettings(base, max_examples=ci_examples)
    return base


@pytest.fixture
def settings(settings):
    """Identity checks off, as a demo deployment has them (IDENTITY_CHECK=off): the room's events
    are reached by a party without an SMS code; consent and notices still apply."""
    settings.identity_check = False
    return settings


@dataclass
class Served:
    lt: LoopThread
    url: str
    app: object
    system: object
    settings: object
    world: object
    case_id: int
    case_number: str
    session_id: int
    room_id: str
    party_ids: list[int]
    mediator: object
    runner: object = None
    extra: dict = field(default_factory=dict)

    @property
    def db(self):
        return self.system.db

    def run(self, coro, timeout: float = 60):
        return self.lt.run(coro, timeout)

    async def token(self, role: str, **kw) -> str:
        from server.core.schemas import InviteIn
        from server.services import sessions as session_svc
        async with self.db.session() as s:
            _, token = await session_svc.create_invite(s, self.mediator, self.session_id, InviteIn(role=role, **kw),
                                                       secret=self.settings.secret_key, default_seconds=3600)
        return token


async def _start(lt: LoopThread, settings) -> Served:
    from aiohttp import web

    from server.core.models import User
    from server.core.policy import Actor
    from server.core.schemas import AssignIn, CaseIn, SessionIn
    from server.http.app import create_app
    from server.services import cases as case_svc
    from server.services import sessions as session_svc
    from server.system import build
    from tests.api.helpers import case_body, seed

    system = build(settings)
    app = create_app(settings, db=system.db)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    db = system.db
    w = await seed(db)
    async with db.session() as s:
        admin = Actor(user=await s.get(User, w.users["admin"]))
        mediator = Actor(user=await s.get(User, w.users["mediator"]))
        case, _ = await case_svc.file_case(s, app["evidence_store"], CaseIn.model_validate(case_body(
            w.inst_a, respondents=[{"name": "李四", "phone": "13900002222"}])), [], max_bytes=1, max_files=0)
        await case_svc.accept(s, admin, case.id)
        await case_svc.assign(s, admin, case.id, AssignIn(mediator_id=w.users["mediator"]))
        sess = await session_svc.open_session(s, mediator, case.id, SessionIn())
        parties = [p.id for p in case.parties]
        number = case.number
    return Served(lt, f"http://127.0.0.1:{port}", app, system, settings, w, case.id, number, sess.id, sess.room_id,
                  parties, mediator, runner)


@pytest.fixture
def served(settings):
    """The app on a loopback port, on its own loop thread, with two institutions, every role, a
    case accepted and assigned, and its session open (the same world as tests/signaling)."""
    lt = LoopThread()
    srv = lt.run(_start(lt, settings))
    try:
        yield srv
    finally:
        async def stop():
            await srv.runner.cleanup()
            await srv.system.close()
        try:
            lt.run(stop(), timeout=30)
        finally:
            lt.close()
