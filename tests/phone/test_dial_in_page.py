"""The mediator's page shows the dial-in number and the link's PIN beside the new link (once), and
that pair is what lets a caller in (services/sessions.py, dial_in); without SIP_LISTEN it is not shown."""
from __future__ import annotations

import html
import re

import pytest

from server.core.errors import Unauthorized
from server.core.models import User
from server.core.policy import Actor
from server.core.schemas import AssignIn, CaseIn, SessionIn
from server.core.throttle import Caller
from server.services import cases as case_svc
from server.services import sessions as session_svc
from tests.api.helpers import case_body, csrf_of, portal_login, seed


@pytest.mark.parametrize("sip_listen", ["udp:127.0.0.1:0", ""])
async def test_the_new_link_comes_with_its_dial_in_number_and_pin(aiohttp_client, settings, db, sip_listen):
    from server.http.app import create_app

    settings.sip_listen = sip_listen
    client = await aiohttp_client(create_app(settings, db=db))
    w = await seed(db)
    async with db.session() as s:
        admin = Actor(user=await s.get(User, w.users["admin"]))
        mediator = Actor(user=await s.get(User, w.users["mediator"]))
        case, _ = await case_svc.file_case(s, client.app["evidence_store"], CaseIn.model_validate(case_body(w.inst_a)),
                                           [], max_bytes=1, max_files=0)
        await case_svc.accept(s, admin, case.id)
        await case_svc.assign(s, admin, case.id, AssignIn(mediator_id=w.users["mediator"]))
        sess = await session_svc.open_session(s, mediator, case.id, SessionIn())
        party_id = case.parties[0].id
    await portal_login(client, "mediator")
    page = await (await client.get(f"/staff/cases/{case.id}")).text()
    r = await client.post(f"/staff/sessions/{sess.id}/invites",
                          data={"role": "party", "party_id": str(party_id), "csrf_token": csrf_of(page)})
    text = html.unescape(await r.text())
    assert r.status == 200 and 'data-testid="join-link"' in text
    shown = re.search(r'data-testid="dial-in">([^<]*)<', text)
    if not sip_listen:
        assert shown is None
        return
    number, pin = re.search(r"(\d{8})\D+(\d{6})", shown.group(1)).groups()
    async with db.session() as s:
        assert (await session_svc.get_session(s, sess.id)).dial_in == number
        invite, _sess, token = await session_svc.dial_in(s, number, pin, Caller(address="192.0.2.1"),
                                                         secret=settings.secret_key, caller_digits="13900009876")
        assert invite.party_id == party_id and token
    wrong = f"{(int(pin) + 1) % 10**6:06d}"
    with pytest.raises(Unauthorized):
        async with db.session() as s:
            await session_svc.dial_in(s, number, wrong, Caller(address="192.0.2.1"), secret=settings.secret_key)


async def test_pin_guessing_is_throttled_like_the_access_code(settings, db):
    from server.core.throttle import TooManyAttempts

    w = await seed(db)
    async with db.session() as s:
        admin = Actor(user=await s.get(User, w.users["admin"]))
        mediator = Actor(user=await s.get(User, w.users["mediator"]))
        case, _ = await case_svc.file_case(s, None, CaseIn.model_validate(case_body(w.inst_a)), [], max_bytes=1,
                                           max_files=0)
        await case_svc.accept(s, admin, case.id)
        await case_svc.assign(s, admin, case.id, AssignIn(mediator_id=w.users["mediator"]))
        sess = await session_svc.open_session(s, mediator, case.id, SessionIn())
        from server.core.schemas import InviteIn
        invite, _ = await session_svc.create_invite(s, mediator, sess.id, InviteIn(role="party", party_id=case.parties[0].id),
                                                    secret=settings.secret_key, default_seconds=3600)
        number = sess.dial_in
    pbx = Caller(address="192.0.2.7")
    refused = 0
    for guess in range(7):
        try:
            async with db.session() as s:
                await session_svc.dial_in(s, number, f"{guess:06d}" if f"{guess:06d}" != invite.pin else "999999",
                                          pbx, secret=settings.secret_key)
        except Unauthorized:
            continue
        except TooManyAttempts:
            refused += 1
    assert refused >= 1  # five free failures, then the source waits (server/core/throttle.py)
    with pytest.raises(TooManyAttempts):  # refused before the PIN is looked at: the right one too
        async with db.session() as s:
            await session_svc.dial_in(s, number, invite.pin, pbx, secret=settings.secret_key)
