"""Institutions, staff accounts and the expert pool (admin work), plus staff login."""
from __future__ import annotations

import datetime as dt
import re

from pypinyin import Style, lazy_pinyin
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import audit
from server.core.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from server.core.models import Expert, Institution, StaffSession, User
from server.core.policy import Actor, require_staff
from server.core.schemas import ExpertIn, InstitutionIn, UserIn, UserPatch
from server.core.throttle import Caller, guard
from server.core.security import hash_secret, hash_secret_async, new_token, token_digest, verify_secret_async

# Verifying against a real hash keeps a login for an unknown user as slow as a wrong password.
_DUMMY_HASH = hash_secret("not-a-real-password")


def _prefix_from_name(name: str) -> str:
    letters = "".join(p[0] for p in lazy_pinyin(name, style=Style.FIRST_LETTER) if p and p[0].isalpha())
    letters = re.sub(r"[^A-Z]", "", letters.upper())[:4]
    return letters if len(letters) >= 2 else "MC"


async def get_institution(s: AsyncSession, institution_id: int) -> Institution | None:
    return await s.get(Institution, institution_id)


async def add_institution(s: AsyncSession, actor: Actor | None, data: InstitutionIn) -> Institution:
    if actor is not None:
        require_staff(actor, "admin")
    if (await s.execute(select(Institution).where(Institution.name == data.name))).scalar_one_or_none():
        raise Conflict("An institution with this name exists already.", fields={"name": "taken"})
    base = data.prefix or _prefix_from_name(data.name)
    prefix, n = base, 1
    while (await s.execute(select(Institution.id).where(Institution.prefix == prefix))).first():
        if data.prefix:
            raise Conflict("This case-number prefix is used by another institution.", fields={"prefix": "taken"})
        n += 1
        prefix = f"{base}{n}"
    inst = Institution(name=data.name, kind=data.kind, area=data.area, prefix=prefix)
    s.add(inst)
    await s.flush()
    await audit.append(s, actor.ref() if actor else audit.SYSTEM, "institution.added",
                       data={"id": inst.id, "name": inst.name, "prefix": prefix})
    return inst


async def list_institutions(s: AsyncSession, include_inactive: bool = False) -> list[Institution]:
    q = select(Institution).order_by(Institution.id)
    if not include_inactive:
        q = q.where(Institution.active.is_(True))
    return list((await s.execute(q)).scalars().all())


async def add_user(s: AsyncSession, actor: Actor | None, data: UserIn) -> User:
    if actor is not None:
        require_staff(actor, "admin")
    if (await s.execute(select(User.id).where(func.lower(User.username) == data.username.lower()))).first():
        raise Conflict("This username is taken.", fields={"username": "taken"})
    if data.role in ("intake", "mediator") and data.institution_id is None:
        raise ValidationFailed("Intake staff and mediators belong to an institution.",
                               fields={"institution_id": "required for this role"})
    if data.institution_id is not None and await s.get(Institution, data.institution_id) is None:
        raise ValidationFailed("Unknown institution.", fields={"institution_id": "unknown institution"})
    user = User(username=data.username, password_hash=await hash_secret_async(data.password), role=data.role,
                institution_id=data.institution_id, name=data.name or data.username)
    s.add(user)
    await s.flush()
    await audit.append(s, actor.ref() if actor else audit.SYSTEM, "user.added",
                       data={"id": user.id, "username": user.username, "role": user.role,
                             "institution_id": user.institution_id})
    return user


async def update_user(s: AsyncSession, actor: Actor, user_id: int, data: UserPatch) -> User:
    admin = require_staff(actor, "admin")
    user = await s.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    changed = {}
    if data.active is not None and data.active != user.active:
        if user.id == admin.id and not data.active:
            raise ValidationFailed("You cannot deactivate your own account.", fields={"active": "self"})
        user.active = data.active
        changed["active"] = data.active
        if not data.active:
            await s.execute(delete(StaffSession).where(StaffSession.user_id == user.id))
    if data.password:
        user.password_hash = await hash_secret_async(data.password)
        changed["password"] = "changed"
        await s.execute(delete(StaffSession).where(StaffSession.user_id == user.id))
    if data.name is not None:
        user.name = data.name
        changed["name"] = data.name
    await audit.append(s, actor.ref(), "user.updated", data={"id": user.id, **changed})
    return user


async def list_users(s: AsyncSession, actor: Actor) -> list[User]:
    require_staff(actor, "admin")
    return list((await s.execute(select(User).order_by(User.id))).unique().scalars().all())


async def add_expert(s: AsyncSession, actor: Actor | None, data: ExpertIn) -> Expert:
    if actor is not None:
        require_staff(actor, "admin")
    expert = Expert(name=data.name, specialty=data.specialty, level=data.level,
                    organisation=data.organisation, phone=data.phone)
    s.add(expert)
    await s.flush()
    await audit.append(s, actor.ref() if actor else audit.SYSTEM, "expert.added",
                       data={"id": expert.id, "name": expert.name, "specialty": expert.specialty,
                             "level": expert.level})
    return expert


async def list_experts(s: AsyncSession, actor: Actor, specialty: str | None = None,
                       level: str | None = None) -> list[Expert]:
    require_staff(actor)
    q = select(Expert).where(Expert.active.is_(True)).order_by(Expert.specialty, Expert.name)
    if specialty:
        q = q.where(Expert.specialty == specialty)
    if level:
        q = q.where(Expert.level == level)
    return list((await s.execute(q)).scalars().all())


async def login(s: AsyncSession, username: str, password: str, hours: int, *,
                caller: Caller) -> tuple[User, str, str]:
    """Returns (user, session token, csrf token). The token is kept only as its hash. Guessing is
    throttled by the caller's address and by the account, but never on the owner's known device
    (server/core/throttle.py, docs/architecture.md "Guessing")."""
    attempt = guard.attempt("login:" + username.lower()[:64], caller)
    user = (await s.execute(select(User).where(func.lower(User.username) == username.lower()))
            ).unique().scalar_one_or_none()
    ok = await verify_secret_async(user.password_hash if user else _DUMMY_HASH, password)
    if not user or not ok or not user.active:
        raise Unauthorized("Wrong username or password.", code="bad_credentials")
    guard.succeeded(attempt)
    token, csrf = new_token(), new_token()
    now = dt.datetime.now(dt.timezone.utc)
    s.add(StaffSession(token_hash=token_digest(token), user_id=user.id, csrf_token=csrf,
                       expires_at=now + dt.timedelta(hours=hours)))
    await s.execute(delete(StaffSession).where(StaffSession.expires_at < now))
    await audit.append(s, audit.ActorRef("staff", str(user.id), user.name), "staff.login", data={})
    return user, token, csrf


async def resolve_session(s: AsyncSession, token: str) -> tuple[User, StaffSession] | None:
    if not token or len(token) > 200:
        return None
    sess = await s.get(StaffSession, token_digest(token))
    if sess is None or sess.expires_at < dt.datetime.now(dt.timezone.utc):
        return None
    user = await s.get(User, sess.user_id)
    if user is None or not user.active:
        return None
    return user, sess


async def logout(s: AsyncSession, token: str) -> None:
    await s.execute(delete(StaffSession).where(StaffSession.token_hash == token_digest(token)))
