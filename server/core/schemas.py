"""Validated shapes of every input accepted at the edge (JSON bodies and forms), and the rules
every input follows (docs/api.md, "Accepted input"): ids, whole numbers, dates and text. The
models, the socket.io events (signaling/schemas.py) and the readers of paths, queries and forms
(server/http/util.py, server/http/pages/common.py) all apply these, and only these.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError,
                      field_validator, model_validator)
from pydantic_core import PydanticCustomError

from server.core.errors import ValidationFailed

# --- what every input accepts (docs/api.md, "Accepted input") ------------------------------------------------

# An id is 1 to 2**31 - 1: PostgreSQL's `integer`, the narrowest id column (institutions, users,
# experts); one bound for every id keeps the rule simple and no table comes near it.
ID_MAX = 2**31 - 1
MAX_DIGITS = 18  # a whole number read from text: at most this many ASCII digits (below 2**63)
DATE_MIN, DATE_MAX = dt.date(1900, 1, 1), dt.date(2199, 12, 31)
CONTROL_MESSAGE = "must not contain control characters (tab and line breaks are allowed)"
DATE_MESSAGE = f"a date from {DATE_MIN.isoformat()} to {DATE_MAX.isoformat()}"

_DIGITS = re.compile(r"[0-9]{1,%d}" % MAX_DIGITS)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# C0 controls but tab, LF and CR; DEL and the C1 controls; lone surrogates (not text at all).
# PostgreSQL refuses NUL in text, SQLite would store it: both databases are kept alike.
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def whole_number(text) -> int | None:
    """ASCII digits (at most MAX_DIGITS) as an int, else None. `str.isdigit()` is no test:
    it is true for "²", which int() refuses, and int() reads "١" or "１" as 1."""
    return int(text) if isinstance(text, str) and _DIGITS.fullmatch(text) else None


def parse_id(text) -> int | None:
    """An id written as text (a path, a query, a form field), or None if it cannot name a row."""
    n = whole_number(text)
    return n if n is not None and 1 <= n <= ID_MAX else None


def has_control(text: str) -> bool:
    return bool(_NOT_TEXT.search(text))


def check_text(value: str | None, field: str) -> str | None:
    """Text read without a model (a query, a path, a form field): 422 if it holds a control character."""
    if value is not None and has_control(value):
        raise ValidationFailed(f"'{field}' contains control characters.", fields={field: CONTROL_MESSAGE})
    return value


def date_in_range(d: dt.date) -> dt.date:
    """Dates far from ours overflow once moved between time zones (year 1, year 9999): refused."""
    if not DATE_MIN <= d <= DATE_MAX:
        raise ValueError(DATE_MESSAGE)
    return d


def parse_date(text: str) -> dt.date:
    """YYYY-MM-DD in ASCII digits, within DATE_MIN..DATE_MAX; ValueError otherwise."""
    if not isinstance(text, str) or not _DATE.fullmatch(text):
        raise ValueError("use YYYY-MM-DD")
    return date_in_range(dt.date.fromisoformat(text))


def _holds_control(v) -> bool:
    if isinstance(v, str):
        return has_control(v)
    if isinstance(v, (list, tuple, set, frozenset)):
        return any(_holds_control(x) for x in v)
    if isinstance(v, dict):
        return any(_holds_control(k) or _holds_control(x) for k, x in v.items())
    return False  # numbers, and nested models (which check their own fields)


def _day(d: dt.date) -> dt.date:
    try:
        return date_in_range(d)
    except ValueError:
        raise PydanticCustomError("date_range", DATE_MESSAGE) from None


def _moment(t: dt.datetime) -> dt.datetime:
    _day(t.date())
    return t


Id = Annotated[int, Field(gt=0, le=ID_MAX)]
Day = Annotated[dt.date, AfterValidator(_day)]
Moment = Annotated[dt.datetime, AfterValidator(_moment)]


class Checked(BaseModel):
    """The base of every input model (bodies, forms, socket.io events): no text in it, however
    nested, holds a control character other than tab, line feed and carriage return."""

    @field_validator("*")
    @classmethod
    def _text_only(cls, v):
        if _holds_control(v):
            raise PydanticCustomError("control_character", CONTROL_MESSAGE)
        return v


CASE_TYPES = ["petition", "mediation", "suggestion"]
CATEGORIES = ["labour", "family", "neighbour", "property", "medical", "fishery", "shipping",
              "construction", "consumer", "other"]
ROLES = ["admin", "intake", "mediator", "clerk"]
EXPERT_LEVELS = ["county", "town"]
INSTITUTION_KINDS = ["people", "administrative", "industry", "judicial", "lawyer", "other"]
INVITE_ROLES = ["party", "expert", "observer", "mediator", "interpreter", "support"]

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=300)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=1000)]

_PHONE = re.compile(r"^\+?[0-9][0-9 \-]{5,19}$")
_ID_NUMBER = re.compile(r"^[0-9]{17}[0-9Xx]$|^[A-Za-z0-9]{6,20}$")


def normalise_phone(v: str) -> str:
    """Digits only, without the +86/0086 country prefix, so "+86 139…" and "139…" match."""
    v = re.sub(r"[ \-()]", "", v.strip())
    for prefix in ("+86", "0086"):
        if v.startswith(prefix) and len(v) > len(prefix) + 6:
            return v[len(prefix):]
    return v


def _phone(v: str) -> str:
    if not _PHONE.match(v.strip()):
        raise ValueError("not a valid phone number")
    return normalise_phone(v)


class Strict(Checked):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ApplicantIn(Strict):
    name: Name
    phone: str
    id_number: str | None = None
    address: ShortText | None = None

    @field_validator("phone")
    @classmethod
    def _p(cls, v):
        return _phone(v)

    @field_validator("id_number")
    @classmethod
    def _id(cls, v):
        if v in (None, ""):
            return None
        if not _ID_NUMBER.match(v.strip()):
            raise ValueError("not a valid identity document number")
        return v.strip().upper()


class RespondentIn(Strict):
    name: Name
    phone: str | None = None
    address: ShortText | None = None

    @field_validator("phone")
    @classmethod
    def _p(cls, v):
        return None if v in (None, "") else _phone(v)


class CaseIn(Strict):
    type: Literal["petition", "mediation", "suggestion"]
    category: Literal["labour", "family", "neighbour", "property", "medical", "fishery", "shipping",
                      "construction", "consumer", "other"]
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=200)]
    description: Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=10000)]
    institution_id: Id
    applicant: ApplicantIn
    respondents: list[RespondentIn] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _needs_other_side(self):
        # A mediation request is between parties; petitions and suggestions may name nobody.
        if self.type == "mediation" and not self.respondents:
            raise PydanticCustomError("respondent_required", "a mediation request names at least one respondent")
        return self


class LoginIn(Strict):
    username: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class RejectIn(Strict):
    reason: Reason


class TransferIn(Strict):
    institution_id: Id
    reason: Reason


class AssignIn(Strict):
    mediator_id: Id


class CloseIn(Strict):
    result: Literal["settled", "failed"]
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] = ""


class WithdrawIn(Strict):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] = ""


class SessionIn(Strict):
    scheduled_at: Moment | None = None


class InviteIn(Strict):
    role: Literal["party", "expert", "observer", "mediator", "interpreter", "support"]
    name: Name | None = None
    # The party this link is for (role party), or whom an interpreter or support person accompanies.
    party_id: Id | None = None
    expert_id: Id | None = None
    expires_in: int | None = Field(default=None, ge=60, le=30 * 24 * 3600)
    # For an ad-hoc expert (not from the pool); `direct` lets the expert skip the lobby.
    specialty: Annotated[str, StringConstraints(strip_whitespace=True, max_length=40)] | None = None
    organisation: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    direct: bool = False
    # An observer who is a judge (法官在线协助): the court's name; the record shows them as the judge.
    court: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None


class TokenIn(Strict):
    token: Annotated[str, StringConstraints(min_length=10, max_length=4096)]


Figure = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]


class LinkCheckIn(Strict):
    """What the room's check-in page measured of its link to this server (the pre-join link check)."""
    rtt_ms: Annotated[Figure, Field(le=60_000)]
    down_kbps: Annotated[Figure, Field(le=10_000_000)]
    up_kbps: Annotated[Figure, Field(le=10_000_000)]


class InstitutionIn(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=200)]
    kind: Literal["people", "administrative", "industry", "judicial", "lawyer", "other"] = "people"
    area: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""
    prefix: str | None = None

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v):
        if v is not None and not re.fullmatch(r"[A-Z]{2,8}", v):
            raise ValueError("use 2-8 capital letters, e.g. TJ")
        return v


class UserIn(Strict):
    username: str
    password: Annotated[str, StringConstraints(min_length=8, max_length=256)]
    role: Literal["admin", "intake", "mediator", "clerk"]
    institution_id: Id | None = None
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = ""

    @field_validator("username")
    @classmethod
    def _u(cls, v):
        if not re.fullmatch(r"[A-Za-z0-9_.\-]{2,64}", v):
            raise ValueError("use 2-64 letters, digits, '.', '_' or '-'")
        return v


class UserPatch(Strict):
    active: bool | None = None
    password: Annotated[str, StringConstraints(min_length=8, max_length=256)] | None = None
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None


class ExpertIn(Strict):
    name: Name
    specialty: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
    level: Literal["county", "town"] = "county"
    organisation: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""
    phone: str = ""

    @field_validator("phone")
    @classmethod
    def _p(cls, v):
        return "" if not v else _phone(v)


def parse(model: type[BaseModel], data) -> BaseModel:
    """Validate or raise ValidationFailed with one message per field (dotted paths)."""
    if not isinstance(data, dict):
        raise ValidationFailed("The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields: dict[str, str] = {}
        for err in exc.errors():
            path = ".".join(str(p) for p in err["loc"]) or "_"
            if err["type"] == "respondent_required":
                path = "respondents"
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            fields.setdefault(path, msg)
        raise ValidationFailed("Some fields are missing or invalid.", fields=fields)
