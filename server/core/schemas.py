"""Validated shapes of every input accepted at the edge (JSON bodies and forms)."""
from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from server.core.errors import ValidationFailed

CASE_TYPES = ["petition", "mediation", "suggestion"]
CATEGORIES = ["labour", "family", "neighbour", "property", "medical", "fishery", "shipping",
              "construction", "consumer", "other"]
ROLES = ["admin", "intake", "mediator", "clerk"]
EXPERT_LEVELS = ["county", "town"]
INSTITUTION_KINDS = ["people", "administrative", "industry", "judicial", "lawyer", "other"]
INVITE_ROLES = ["party", "expert", "observer", "mediator"]

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


class Strict(BaseModel):
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
    institution_id: int = Field(gt=0)
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
    institution_id: int = Field(gt=0)
    reason: Reason


class AssignIn(Strict):
    mediator_id: int = Field(gt=0)


class CloseIn(Strict):
    result: Literal["settled", "failed"]
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] = ""


class WithdrawIn(Strict):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] = ""


class SessionIn(Strict):
    scheduled_at: dt.datetime | None = None


class InviteIn(Strict):
    role: Literal["party", "expert", "observer", "mediator"]
    name: Name | None = None
    party_id: int | None = Field(default=None, gt=0)
    expert_id: int | None = Field(default=None, gt=0)
    expires_in: int | None = Field(default=None, ge=60, le=30 * 24 * 3600)
    # For an ad-hoc expert (not from the pool); `direct` lets the expert skip the lobby.
    specialty: Annotated[str, StringConstraints(strip_whitespace=True, max_length=40)] | None = None
    organisation: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    direct: bool = False


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
    institution_id: int | None = Field(default=None, gt=0)
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
