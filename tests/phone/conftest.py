"""A real server (aiohttp on a loopback port) with its SIP endpoint on a loopback UDP port, a case
with two parties, a session, and the mediator in the room as a real aiortc participant."""
from __future__ import annotations

import asyncio
import collections
import shutil
from dataclasses import dataclass

import av
import numpy as np
import pytest
from sqlalchemy import select

from server.core.models import MediationSession, User
from server.core.policy import Actor
from server.core.schemas import AssignIn, CaseIn, InviteIn, SessionIn
from server.services import cases as case_svc
from server.services import sessions as session_svc
from tests.api.helpers import case_body, seed
from tests.conftest import IN_CI
from tests.rooms.clients import Media
from tests.signaling.peer import Peer
from tests.support.servers import free_port


def need(program: str) -> None:
    if shutil.which(program) is None:
        if IN_CI:
            pytest.fail(f"{program} is not installed (run.sh installs it)", pytrace=False)
        pytest.skip(f"{program} is not installed")


@pytest.fixture(scope="session")
def media() -> Media:
    return Media()


@pytest.fixture
def db_url(tmp_path, sqlite_template):
    path = tmp_path / "test.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


class ListeningPeer(Peer):
    """A room participant that keeps the decoded audio of each publisher (8 kHz mono)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.audio: dict[str, list[np.ndarray]] = collections.defaultdict(list)

    async def _read(self, track, mid) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=8000)
        try:
            while True:
                frame = await track.recv()
                row = self.tracks.get(mid) or {}
                self.decoded[(track.kind, row.get("participant_id"))] += 1
                if track.kind == "audio":
                    for out in resampler.resample(frame):
                        self.audio[row.get("participant_id")].append(out.to_ndarray().reshape(-1))
        except Exception:  # noqa: BLE001 - the track ended
            pass

    def heard_from(self, pid: str, seconds: float) -> np.ndarray:
        frames = self.audio.get(pid) or []
        data = np.concatenate(frames) if frames else np.zeros(0, np.int16)
        return data[-int(seconds * 8000):]


@dataclass
class PhoneLive:
    url: str
    app: object
    db: object
    settings: object
    session_id: int
    case_id: int
    party_ids: list[int]
    mediator: Actor
    sip: tuple[str, int]

    async def invite(self, role: str, **kw):
        async with self.db.session() as s:
            invite, token = await session_svc.create_invite(s, self.mediator, self.session_id, InviteIn(role=role, **kw),
                                                            secret=self.settings.secret_key, default_seconds=3600)
            number = (await s.execute(select(MediationSession.dial_in).where(
                MediationSession.id == self.session_id))).scalar_one()
        return invite, token, number

    async def end(self) -> None:
        async with self.db.session() as s:
            await session_svc.end_session(s, self.mediator, self.session_id)


@pytest.fixture
async def phone_live(aiohttp_server, settings, db):
    need("espeak-ng")
    from server.http.app import create_app

    port = free_port()
    settings.node_url = f"http://127.0.0.1:{port}"
    settings.sip_listen = "udp:127.0.0.1:0"
    app = create_app(settings, db=db)
    server = await aiohttp_server(app, host="127.0.0.1", port=port)
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
    endpoint = app["phone"]
    yield PhoneLive(str(server.make_url("")).rstrip("/"), app, db, settings, sess.id, case.id, parties, mediator,
                    ("127.0.0.1", endpoint.listen.port))


@pytest.fixture
async def mediator(phone_live, media):
    """The mediator in the room, publishing a 440 Hz tone (tests/rooms/clients.py's Opus)."""
    _, token, _ = await phone_live.invite("mediator")
    peer = ListeningPeer(phone_live.url, token, media)
    ack = await peer.join()
    assert ack["ok"], ack
    assert (await peer.publish(video=False))["ok"]
    yield peer
    await peer.close()


async def until(predicate, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)
