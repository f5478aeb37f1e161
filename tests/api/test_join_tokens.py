"""Join tokens: signed, expiring, revocable, and refused once their session ends."""
from __future__ import annotations

import datetime as dt

import jwt
import pytest

from server.core.security import decode_join_token, issue_join_token, TokenInvalid

from .helpers import file_case, login, seed

SECRET = "test-secret-key-" + "x" * 32


async def _session(client, db):
    w = await seed(db)
    cid = (await file_case(client, w.inst_a))["case"]["id"]
    intake, mediator = await login(client, "intake"), await login(client, "mediator")
    await client.post(f"/api/v1/cases/{cid}/accept", headers=intake)
    await client.post(f"/api/v1/cases/{cid}/assign", headers=intake, json={"mediator_id": w.users["mediator"]})
    sid = (await (await client.post(f"/api/v1/cases/{cid}/sessions", headers=mediator, json={})).json())["session"]["id"]
    return w, mediator, sid


async def _verify(client, token):
    return await (await client.post("/api/v1/join-tokens/verify", json={"token": token})).json()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_forged_expired_revoked_tokens_are_refused(client, db):
    w, mediator, sid = await _session(client, db)
    r = await client.post(f"/api/v1/sessions/{sid}/invites", headers=mediator,
                          json={"role": "expert", "expert_id": w.expert})
    inv = await r.json()
    claims = decode_join_token(SECRET, inv["token"])
    assert claims["role"] == "expert" and claims["name"] == "刘建国"
    # Expert links are short-lived and single-use by default.
    assert claims["exp"] - claims["iat"] == 2 * 3600 and inv["invite"]["single_use"]
    assert (await _verify(client, inv["token"]))["valid"]

    forged = jwt.encode({**claims, "role": "mediator", "grants": ["admit", "end"]}, "another-secret-" + "y" * 32,
                        algorithm="HS256")
    assert (await _verify(client, forged))["error"]["code"] == "token_invalid"
    tampered = inv["token"][:-4] + ("AAAA" if not inv["token"].endswith("AAAA") else "BBBB")
    assert (await _verify(client, tampered))["error"]["code"] == "token_invalid"

    expired, _ = issue_join_token(SECRET, session_id=sid, room_id="r", role="party", name="x", grants=[],
                                  expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5),
                                  jti=claims["jti"])
    assert (await _verify(client, expired))["error"]["code"] == "token_expired"
    with pytest.raises(TokenInvalid):
        decode_join_token(SECRET, expired)

    r = await client.post(f"/api/v1/sessions/{sid}/invites/{inv['invite']['id']}/revoke", headers=mediator)
    assert (await r.json())["invite"]["revoked_at"]
    assert (await _verify(client, inv["token"]))["error"]["code"] == "token_revoked"

    r = await client.post(f"/api/v1/sessions/{sid}/invites", headers=mediator, json={"role": "observer", "name": "法官"})
    obs = await r.json()
    await client.post(f"/api/v1/sessions/{sid}/end", headers=mediator)
    assert (await _verify(client, obs["token"]))["error"]["code"] == "session_ended"
    r = await client.post(f"/api/v1/sessions/{sid}/invites", headers=mediator, json={"role": "observer", "name": "x"})
    assert r.status == 409 and (await r.json())["error"]["code"] == "session_ended"
