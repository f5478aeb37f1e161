"""What the live room writes down: joins, admissions, removals, chat, the session's end, and the
check-in page's link check (its probes' limits and the verdict on what the link can carry).

Signaling calls these with the participant's verified join token; the same rules apply as
for the REST API (a participant is not a staff login, so the checks are on the invite).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import audit
from server.core.errors import AppError, Forbidden, Unauthorized, ValidationFailed
from server.core.models import ChatMessage, Invite, MediationSession, User
from server.core.schemas import LinkCheckIn, whole_number
from server.core.security import TokenInvalid, decode_join_token
from server.core.throttle import Throttle, guard
from server.services.cases import get_case
from server.core.policy import Actor
from server.services.sessions import end, get_session, verify_join_token

CHAT_MAX = 2000


@dataclass
class Pass:
    """A verified join token: who this participant is and where they may go."""

    participant_id: str
    name: str
    role: str
    grants: set[str]
    session_id: int
    case_id: int
    room_id: str
    invite_id: int
    expires_at: int
    direct: bool = False
    user_id: int | None = None
    # An interpreter or support person: the party they accompany (its participant id and name).
    accompanies: str | None = None
    accompanies_name: str = ""

    def ref(self) -> audit.ActorRef:
        return audit.ActorRef("participant", self.participant_id, self.name)

    def who(self) -> dict:
        """How the record names this participant: with the party they accompany, if any."""
        out = {"participant_id": self.participant_id, "name": self.name, "role": self.role}
        if self.accompanies:
            out.update(accompanies=self.accompanies, accompanies_name=self.accompanies_name)
        return out


def make_pass(claims: dict, invite: Invite, sess: MediationSession) -> Pass:
    """The Pass of a verified token (its invite and session checked by the caller)."""
    linked = claims.get("accompanies") if isinstance(claims.get("accompanies"), dict) else None
    return Pass(participant_id=str(claims["sub"]), name=str(claims.get("name", "")), role=claims["role"],
                grants=set(claims.get("grants", [])), session_id=sess.id, case_id=sess.case_id,
                room_id=sess.room_id, invite_id=invite.id, expires_at=int(claims["exp"]),
                direct=bool(invite.direct), user_id=invite.user_id,
                accompanies=str(linked["id"]) if linked else None,
                accompanies_name=str(linked.get("name", "")) if linked else "")


def ice_servers_for(settings, p: Pass) -> list[dict]:
    """The ICE servers a participant's browser uses: the configured ones, plus the TURN relay with
    credentials of coturn's use-auth-secret scheme (username `expiry:participant`, password the
    base64 HMAC-SHA1 of it under TURN_SECRET). They expire with the participant's link and name
    only this participant, so they open the relay and nothing else."""
    servers = [dict(x) for x in settings.ice_servers]
    if settings.turn_urls:
        username = f"{p.expires_at}:{p.participant_id}"
        digest = hmac.new(settings.turn_secret.encode(), username.encode(), hashlib.sha1).digest()
        servers.append({"urls": list(settings.turn_urls), "username": username,
                        "credential": base64.b64encode(digest).decode()})
    return servers


async def check_pass(s: AsyncSession, secret: str, token: str, *, known: bool) -> Pass:
    """Verify a join token. `known`: this participant was in the room before (a reconnect),
    so a single-use link may be used again by the same person."""
    claims, invite, sess = await verify_join_token(s, secret, token)
    if invite.single_use and invite.used_at is not None and not known:
        raise TokenInvalid("token_used", "This join link has already been used.")
    return make_pass(claims, invite, sess)


async def still_valid(s: AsyncSession, secret: str, token: str) -> bool:
    try:
        await verify_join_token(s, secret, token)
        return True
    except TokenInvalid:
        return False


async def record(s: AsyncSession, p: Pass, action: str, data: dict | None = None,
                 actor: audit.ActorRef | None = None) -> None:
    await audit.append(s, actor or p.ref(), action, case_id=p.case_id, session_id=p.session_id,
                       data={**p.who(), **(data or {})})


async def record_by(s: AsyncSession, p: Pass, action: str, data: dict | None = None, *, by: Pass | None) -> None:
    """A step that happened to `p`: taken by another participant (the mediator), or by the server."""
    await record(s, p, action, data, actor=by.ref() if by is not None else audit.SYSTEM)


async def record_system(s: AsyncSession, case_id: int, session_id: int, action: str, data: dict | None = None) -> None:
    """A step of the room taken by the server itself (restored after failover, recording stopped, …)."""
    await audit.append(s, audit.SYSTEM, action, case_id=case_id, session_id=session_id, data=data or {})


async def joined(s: AsyncSession, p: Pass, where: str, *, resumed: bool = False) -> None:
    """The participant is in: the link counts as used from now on (not when a step was still owed).
    `resumed`: it was still in the room (a dropped connection coming back), not entering anew."""
    await s.execute(Invite.__table__.update().where(Invite.id == p.invite_id, Invite.used_at.is_(None))
                    .values(used_at=dt.datetime.now(dt.timezone.utc)))
    sess = await get_session(s, p.session_id, lock=True)
    if sess.status in ("scheduled", "interrupted"):
        sess.status = "live"
        sess.started_at = sess.started_at or dt.datetime.now(dt.timezone.utc)
    await record(s, p, "participant.reconnected" if resumed else "participant.joined", {"where": where})


async def save_chat(s: AsyncSession, p: Pass, area: str, text: str) -> ChatMessage:
    msg = ChatMessage(session_id=p.session_id, participant_id=p.participant_id, name=p.name, role=p.role,
                      area=area, text=text)
    s.add(msg)
    await s.flush()
    return msg


async def chat_history(s: AsyncSession, session_id: int, area: str, limit: int = 100) -> list[ChatMessage]:
    rows = (await s.execute(select(ChatMessage).where(ChatMessage.session_id == session_id, ChatMessage.area == area)
                            .order_by(ChatMessage.id.desc()).limit(limit))).scalars().all()
    return list(reversed(rows))


async def mediator_actor(s: AsyncSession, p: Pass):
    """The staff identity behind a mediator's own join link, so staff rules apply in the room."""
    if p.role != "mediator" or p.user_id is None:
        raise Forbidden("Only the mediator can do this.")
    user = await s.get(User, p.user_id)
    if user is None or not user.active:
        raise Forbidden("Only the mediator can do this.")
    return Actor(user=user)


async def end_by_participant(s: AsyncSession, p: Pass) -> MediationSession:
    """`session.end` from the room: only the case's mediator, through their own link."""
    if "end" not in p.grants or p.role != "mediator":
        raise Forbidden("Only the mediator can end the session.")
    invite = await s.get(Invite, p.invite_id)
    sess = await get_session(s, p.session_id, lock=True)
    case = await get_case(s, sess.case_id)
    if invite is None or invite.user_id is None or invite.user_id != case.mediator_id:
        raise Forbidden("Only the mediator assigned to this case can end the session.")
    user = await s.get(User, invite.user_id)
    await end(s, sess, audit.ActorRef("staff", str(user.id), user.name), via="room")
    return sess


# --- the link check on the check-in page -----------------------------------------------------------
# Before entering, the page measures its link to this server: a few small requests for the round
# trip, then a download and an upload probe of a few hundred KB within about 3 s. The figures come
# back here; the verdict (can this link carry video?) is decided here, written to the session's
# record, and shown.

PROBE_MAX_BYTES = 512 * 1024
PROBE_DRAIN_BYTES = 4 * PROBE_MAX_BYTES  # an oversized upload is read this far before it is refused
_PROBE_BODY = os.urandom(PROBE_MAX_BYTES)  # random, so no proxy's compression flatters the link
# A check is about ten requests; a few checks a minute (a reload, "check again") stay well inside.
probe_limit = Throttle(max_failures=60, window=60,
                       message="Too many link-check requests. Try again in {wait} minutes.")

# What video needs here: the page sends at most 600 kbit/s of video plus 48 of audio, and receives
# that from each person it watches.
LINK_GOOD = {"rtt_ms": 300, "down_kbps": 1000, "up_kbps": 700}
LINK_FAIR = {"rtt_ms": 800, "down_kbps": 400, "up_kbps": 250}


class ProbeTooLarge(AppError):
    status = 413
    code = "too_large"


def _refused(exc: TokenInvalid) -> Unauthorized:
    return Unauthorized(exc.message, code=exc.code)


def probe_pass(secret: str, token: str | None, client: str) -> dict:
    """The caller of a probe: a join token whose signature and expiry hold. No database is asked,
    so the round trip measured is the link's, not a query's. A bad token counts as a failed guess
    for the client's address (the shared throttle); each probe counts against its link's limit."""
    key = f"link-token:{client}"
    guard.check(key)
    if not token:
        raise Unauthorized("Send the join link's token in X-Join-Token.", code="token_missing")
    try:
        claims = decode_join_token(secret, token)
    except TokenInvalid as exc:
        guard.fail(key)
        raise _refused(exc)
    probe_limit.take(f"link:{claims['jti']}")
    return claims


def probe_download(raw: str | None) -> bytes:
    """The download probe's body: `raw` (the query's `bytes`) bytes; 256 KB by default, at most PROBE_MAX_BYTES."""
    size = 256 * 1024 if raw is None else (whole_number(raw) or 0)
    if not 1 <= size <= PROBE_MAX_BYTES:
        raise ValidationFailed(f"bytes must be a number from 1 to {PROBE_MAX_BYTES}.", fields={"bytes": "out of range"})
    return _PROBE_BODY[:size]


def probe_upload_refused(size: int) -> ProbeTooLarge:
    return ProbeTooLarge(f"The upload probe is too large: at most {PROBE_MAX_BYTES} bytes (got {size} or more).",
                         fields={"max_bytes": PROBE_MAX_BYTES})


def link_verdict(f: LinkCheckIn) -> str:
    """good: video will work; fair: video may stutter; poor: audio only is the better choice."""
    def meets(bar: dict) -> bool:
        return f.rtt_ms <= bar["rtt_ms"] and f.down_kbps >= bar["down_kbps"] and f.up_kbps >= bar["up_kbps"]
    return "good" if meets(LINK_GOOD) else ("fair" if meets(LINK_FAIR) else "poor")


async def record_link_check(s: AsyncSession, secret: str, token: str | None, figures: LinkCheckIn,
                            client: str) -> dict:
    """The check's result, authenticated by the join token (the full check: revoked links and ended
    sessions are refused), written to the session's record as `link.checked`."""
    probe_pass(secret, token, client)
    try:
        p = await check_pass(s, secret, token or "", known=True)
    except TokenInvalid as exc:
        raise _refused(exc)
    verdict = link_verdict(figures)
    data = {"rtt_ms": round(figures.rtt_ms, 1), "down_kbps": round(figures.down_kbps),
            "up_kbps": round(figures.up_kbps), "verdict": verdict}
    await record(s, p, "link.checked", data)
    return data
