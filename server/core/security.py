"""Password and access-code hashing, random secrets, signed join tokens."""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
import uuid

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from rooms.participant import DEFAULT_GRANTS

_hasher = PasswordHasher()

# No 0/O/1/I/L: access codes are read out over the phone and typed on small keyboards.
_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def hash_secret(value: str) -> str:
    return _hasher.hash(value)


def verify_secret(stored_hash: str, value: str) -> bool:
    try:
        return _hasher.verify(stored_hash, value)
    except (VerificationError, InvalidHashError):
        return False


async def hash_secret_async(value: str) -> str:
    # Argon2 takes ~100 ms of CPU by design; off the event loop so live media keeps flowing.
    return await asyncio.to_thread(_hasher.hash, value)


async def verify_secret_async(stored_hash: str, value: str) -> bool:
    return await asyncio.to_thread(verify_secret, stored_hash, value)


def new_access_code(length: int = 8) -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(length))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# The grants of each role are the live room's own (rooms/participant.py); join tokens carry them.
ROLE_GRANTS = {role: sorted(grants) for role, grants in DEFAULT_GRANTS.items()}

JOIN_AUDIENCE = "mediation-join"
JOIN_ISSUER = "mediation"


def issue_join_token(secret: str, *, session_id: int, room_id: str, role: str, name: str,
                     grants: list[str], expires_at: dt.datetime, participant: str | None = None,
                     jti: str | None = None, accompanies: tuple[str, str] | None = None) -> tuple[str, str]:
    """A signed, expiring token naming session, participant, role and grants. Returns (token, jti).
    `accompanies`: an interpreter's or support person's party, (participant id, name)."""
    jti = jti or uuid.uuid4().hex
    now = dt.datetime.now(dt.timezone.utc)
    claims = {
        "iss": JOIN_ISSUER,
        "aud": JOIN_AUDIENCE,
        "iat": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
        "jti": jti,
        "sid": session_id,
        "room": room_id,
        "sub": participant or f"inv-{jti[:12]}",
        "role": role,
        "name": name,
        "grants": grants,
    }
    if accompanies is not None:
        claims["accompanies"] = {"id": accompanies[0], "name": accompanies[1]}
    return jwt.encode(claims, secret, algorithm="HS256"), jti


class TokenInvalid(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def decode_join_token(secret: str, token: str) -> dict:
    try:
        return jwt.decode(token, secret, algorithms=["HS256"], audience=JOIN_AUDIENCE,
                          issuer=JOIN_ISSUER, options={"require": ["exp", "jti", "sid", "role"]})
    except jwt.ExpiredSignatureError:
        raise TokenInvalid("token_expired", "This join link has expired.")
    except jwt.InvalidTokenError:
        raise TokenInvalid("token_invalid", "This join link is not valid.")
