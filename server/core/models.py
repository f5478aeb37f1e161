"""Database models (SQLAlchemy 2). Schema changes go through Alembic migrations.

One module (~650 lines): every table, so the schema reads in one place beside its migrations."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Float,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator):
    """Always hands back timezone-aware UTC datetimes (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.timezone.utc)
            value = value.astimezone(dt.timezone.utc)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


# SQLite only auto-increments INTEGER PRIMARY KEY; BigInteger elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, dt.datetime: UTCDateTime}


class Institution(Base):
    __tablename__ = "institutions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(40), default="people")
    area: Mapped[str] = mapped_column(String(200), default="")
    # Letters that start this institution's case numbers, e.g. "TJ" in TJ-2026-000001.
    prefix: Mapped[str] = mapped_column(String(12), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(100), default="")
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    institution: Mapped[Institution | None] = relationship(lazy="joined")


class StaffSession(Base):
    """Server-side login session; the cookie/bearer token is stored only as a hash."""

    __tablename__ = "staff_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()


class Expert(Base):
    __tablename__ = "experts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    specialty: Mapped[str] = mapped_column(String(40), index=True)
    level: Mapped[str] = mapped_column(String(10), default="county")
    organisation: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str] = mapped_column(String(30), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CaseCounter(Base):
    """Per institution and year sequence; rows are locked while a number is taken."""

    __tablename__ = "case_counters"
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class Case(Base):
    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(20))
    category: Mapped[str] = mapped_column(String(20), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), index=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    mediator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    access_code_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    institution: Mapped[Institution] = relationship(lazy="joined")
    mediator: Mapped[User | None] = relationship(lazy="joined")
    parties: Mapped[list["Party"]] = relationship(
        back_populates="case", order_by="Party.id", lazy="selectin", cascade="all, delete-orphan"
    )
    evidence: Mapped[list["Evidence"]] = relationship(
        back_populates="case", order_by="Evidence.id", lazy="selectin", cascade="all, delete-orphan"
    )

    __table_args__ = (
        # Archive search pages by (created_at, id) from a cursor; analytics filter by institution and date.
        Index("ix_cases_created_id", "created_at", "id"),
        Index("ix_cases_inst_created", "institution_id", "created_at"),
    )


class Party(Base):
    __tablename__ = "parties"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    side: Mapped[str] = mapped_column(String(12))  # applicant | respondent
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str] = mapped_column(String(30), default="")
    id_number: Mapped[str] = mapped_column(String(30), default="")
    address: Mapped[str] = mapped_column(String(300), default="")

    case: Mapped[Case] = relationship(back_populates="parties")


class Evidence(Base):
    __tablename__ = "evidence"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Added in a live session (server/services/evidence.py): which session, by which participant,
    # and the mediator's decision on presenting it (pending | accepted | rejected). Filed evidence
    # has none of these and may be presented.
    session_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    submitted_by: Mapped[str | None] = mapped_column(String(80), nullable=True)
    submitted_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    review: Mapped[str | None] = mapped_column(String(12), nullable=True)

    case: Mapped[Case] = relationship(back_populates="evidence")


class MediationSession(Base):
    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    room_id: Mapped[str] = mapped_column(String(40), unique=True)
    status: Mapped[str] = mapped_column(String(12), default="scheduled")  # scheduled | live | ended
    scheduled_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # The session number a caller keys in by telephone (services/sessions.py, dial_in).
    dial_in: Mapped[str | None] = mapped_column(String(12), unique=True, nullable=True)


class Invite(Base):
    """A join link. The token is a signed JWT; this row lets it be revoked and audited."""

    __tablename__ = "invites"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    jti: Mapped[str] = mapped_column(String(40), unique=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    role: Mapped[str] = mapped_column(String(12))
    name: Mapped[str] = mapped_column(String(100))
    party_id: Mapped[int | None] = mapped_column(ForeignKey("parties.id"), nullable=True)
    expert_id: Mapped[int | None] = mapped_column(ForeignKey("experts.id"), nullable=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    grants: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    single_use: Mapped[bool] = mapped_column(Boolean, default=False)
    # Experts: what they bring, and whether they skip the lobby.
    specialty: Mapped[str] = mapped_column(String(40), default="", server_default="")
    organisation: Mapped[str] = mapped_column(String(200), default="", server_default="")
    direct: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # An observer who is a judge (法官): `organisation` holds the court's name (docs/procedure.md).
    judge: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    used_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # The link's personal PIN for joining by telephone, as a keyed digest (never the PIN), and the
    # participant id its token names, so a call is the same participant as the link.
    pin_digest: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    participant_id: Mapped[str | None] = mapped_column(String(60), nullable=True)
    pin = None  # the PIN in clear, only on the object issue_invite returns (shown once, like the link)


class AuditEntry(Base):
    """Append-only, hash-chained: each entry's hash covers its content and the previous hash."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), nullable=True, index=True)
    session_id: Mapped[int | None] = mapped_column(nullable=True, index=True)
    actor_type: Mapped[str] = mapped_column(String(12))  # staff | applicant | participant | system
    actor_id: Mapped[str] = mapped_column(String(40), default="")
    actor_name: Mapped[str] = mapped_column(String(100), default="")
    action: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_case_seq", "case_id", "seq"),
        # Analytics: the first acceptance / session / outcome of each case (index-only on PostgreSQL).
        Index("ix_audit_action_case", "action", "case_id", "created_at"),
    )


class AuditHead(Base):
    """One row holding the chain's tip; locking it serialises appends across nodes."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64))


__all__ = [
    "Base", "Institution", "User", "StaffSession", "Expert", "CaseCounter", "Case", "Party",
    "Evidence", "MediationSession", "Invite", "AuditEntry", "AuditHead", "ChatMessage", "utcnow", "UniqueConstraint",
]


class ChatMessage(Base):
    """Chat in a live session, kept with the session (per area: main, or a caucus)."""

    __tablename__ = "chat_messages"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    participant_id: Mapped[str] = mapped_column(String(60))
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(12))
    area: Mapped[str] = mapped_column(String(60))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class OutboxJob(Base):
    """Work for another system (court, SMS, mail), delivered with retries by server/infra/outbox.py."""

    __tablename__ = "outbox_jobs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    key: Mapped[str] = mapped_column(String(120), default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column()
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)

    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)


# --- outcome (agreements, court submissions)
# The settlement agreement of a case, its signatures, the parties' personal outcome links, and
# what goes to a court (judicial confirmation, litigation filing) through a persistent outbox.
# Written by server/services/outcome/agreements.py and court.py.

from sqlalchemy import LargeBinary  # noqa: E402


class Agreement(Base):
    """人民调解协议书: drafted by the mediator, fixed (text + SHA-256) when finalised, effective when all signed."""

    __tablename__ = "agreements"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), unique=True)
    template: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(12), default="draft")  # draft | final | effective
    version: Mapped[int] = mapped_column(Integer, default=1)
    content: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    text: Mapped[str] = mapped_column(Text, default="")
    text_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finalised_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    effective_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # Civil Procedure Law art. 205: joint application for judicial confirmation within 30 days.
    confirmation_deadline: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    pdf_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    pdf_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    pdf_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    seal: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # certificate, time, timestamp
    reminders: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AgreementComment(Base):
    __tablename__ = "agreement_comments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreements.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    author_type: Mapped[str] = mapped_column(String(12))  # participant | party | staff
    author_id: Mapped[str] = mapped_column(String(60), default="")
    author_name: Mapped[str] = mapped_column(String(100), default="")
    role: Mapped[str] = mapped_column(String(12), default="")
    area: Mapped[str] = mapped_column(String(60), default="main")
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AgreementSignature(Base):
    """One handwritten signature on the final text (its SHA-256), with how the signer was identified."""

    __tablename__ = "agreement_signatures"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreements.id"), index=True)
    signer_key: Mapped[str] = mapped_column(String(40))  # "party:<id>" | "mediator"
    role: Mapped[str] = mapped_column(String(12))  # party | mediator
    party_id: Mapped[int | None] = mapped_column(ForeignKey("parties.id"), nullable=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    name: Mapped[str] = mapped_column(String(100))
    side: Mapped[str] = mapped_column(String(12), default="")
    method: Mapped[str] = mapped_column(String(40))
    text_sha256: Mapped[str] = mapped_column(String(64))
    image: Mapped[bytes] = mapped_column(LargeBinary)
    image_sha256: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    signed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("agreement_id", "signer_key", name="uq_agreement_signer"),)


class PartyLink(Base):
    """A party's personal outcome link (sign, confirm the court application, ask for a filing); token stored hashed."""

    __tablename__ = "party_links"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class CourtSubmission(Base):
    """司法确认申请 or 诉讼立案申请: the package for the court and what became of it."""

    __tablename__ = "court_submissions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(30))  # judicial_confirmation | litigation_filing | enforcement
    # collecting | queued | delivered | accepted | confirmed | rejected | failed
    status: Mapped[str] = mapped_column(String(20), default="collecting")
    court_id: Mapped[str] = mapped_column(String(40))
    court_name: Mapped[str] = mapped_column(String(200))
    basis: Mapped[str] = mapped_column(String(30), default="")
    key: Mapped[str] = mapped_column(String(64), unique=True)  # idempotency key sent to the court
    deadline: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    confirmations: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    requested_by: Mapped[str] = mapped_column(String(100), default="")
    package: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    package_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    answered_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    court_reference: Mapped[str] = mapped_column(String(100), default="")
    answer: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Enforcement: the applying party, one application each (both sides may be owed something);
    # 0 for the kinds a case has once.
    applicant_party_id: Mapped[int] = mapped_column(default=0, server_default="0")

    __table_args__ = (UniqueConstraint("case_id", "kind", "applicant_party_id", name="uq_submission_case_kind"),)


class OutboxMessage(Base):
    """A delivery still owed to a court: retried with exponential backoff until it gets through."""

    __tablename__ = "court_outbox"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("court_submissions.id"), unique=True)
    adapter: Mapped[str] = mapped_column(String(20))  # directory | http
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending | delivered | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    response: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_court_outbox_due", "status", "next_attempt_at"),)


# --- procedure: consent to online mediation, identity, notices, conflicts, recusal, deadlines, scheduling,
# notifications and the e-transcript (server/services/{procedure,deadlines,notify,transcript}.py)

class OnlineConsent(Base):
    """A party's answer to mediating online (art. 4): who, when, how. The latest answer counts."""

    __tablename__ = "online_consents"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id", ondelete="CASCADE"), index=True)
    agree: Mapped[bool] = mapped_column(Boolean)
    how: Mapped[str] = mapped_column(String(20))  # room | portal | api | written | phone | in_person
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id"), nullable=True)
    participant_id: Mapped[str] = mapped_column(String(60), default="")
    recorded_by: Mapped[str] = mapped_column(String(100), default="")
    note: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class IdentityCheck(Base):
    """One identity attempt of a party joining a session (art. 17); failures count towards the limit."""

    __tablename__ = "identity_checks"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    participant_id: Mapped[str] = mapped_column(String(60))
    party_id: Mapped[int | None] = mapped_column(ForeignKey("parties.id"), nullable=True)
    ok: Mapped[bool] = mapped_column(Boolean)
    method: Mapped[str] = mapped_column(String(16))  # access_code | party_code | sms
    reason: Mapped[str] = mapped_column(String(40), default="")
    id_last6_given: Mapped[str] = mapped_column(String(6), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_identity_session_participant", "session_id", "participant_id"),)


class NoticeAck(Base):
    """A participant acknowledged a notice (confidentiality, concessions, sham mediation) for a session."""

    __tablename__ = "notice_acks"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"))
    participant_id: Mapped[str] = mapped_column(String(60))
    role: Mapped[str] = mapped_column(String(12))
    notice: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("session_id", "participant_id", "notice", name="uq_notice_ack"),)


class PartyCredential(Base):
    """A per-party access code (respondents have no case access code); stored only as a hash."""

    __tablename__ = "party_credentials"
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id", ondelete="CASCADE"), primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(255))
    issued_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    issued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SmsCode(Base):
    """A one-time identity code sent by SMS to the party's phone for one session."""

    __tablename__ = "sms_codes"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"))
    participant_id: Mapped[str] = mapped_column(String(60))
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime] = mapped_column()
    used_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_sms_codes_session_participant", "session_id", "participant_id"),)


class ConflictDeclaration(Base):
    """The assigned mediator's conflict-of-interest declaration (art. 13)."""

    __tablename__ = "conflict_declarations"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    mediator_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    conflict: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RecusalRequest(Base):
    """A party asks for a different mediator (回避申请); intake decides."""

    __tablename__ = "recusal_requests"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id", ondelete="CASCADE"))
    mediator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending | granted | refused
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    decision_note: Mapped[str] = mapped_column(Text, default="")


class Deadline(Base):
    """One running time limit of a case, from the rule table in services/deadlines.py."""

    __tablename__ = "deadlines"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    rule: Mapped[str] = mapped_column(String(30))
    starts_at: Mapped[dt.datetime] = mapped_column()
    due_on: Mapped[str] = mapped_column(String(10))  # the last allowed day (YYYY-MM-DD, centre's time zone)
    due_at: Mapped[dt.datetime] = mapped_column()     # the first moment it is overdue
    status: Mapped[str] = mapped_column(String(12), default="open")  # open | met | cancelled
    closed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    reminded_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    overdue_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)  # when it was flagged overdue
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_deadlines_status_due", "status", "due_at"),)


class SessionPlan(Base):
    """When a scheduled session starts and how long it is planned to take."""

    __tablename__ = "session_plans"
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    starts_at: Mapped[dt.datetime] = mapped_column()
    duration_minutes: Mapped[int] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Contact(Base):
    """Where to reach a party, a staff member or an expert beyond what the case holds (e-mail, language)."""

    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # party | user | expert
    ref_id: Mapped[int] = mapped_column(BigInteger)
    email: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str] = mapped_column(String(30), default="")
    lang: Mapped[str] = mapped_column(String(8), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("kind", "ref_id", name="uq_contact_ref"),)


class Transcript(Base):
    """The e-transcript (笔录) of one session: open while the mediator writes, then reviewed and final."""

    __tablename__ = "transcripts"
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(12), default="open")  # open | review | final
    mode: Mapped[str] = mapped_column(String(12), default="confirm")  # confirm | recording
    facts: Mapped[str] = mapped_column(Text, default="")
    revision: Mapped[int] = mapped_column(Integer, default=0)
    content_sha256: Mapped[str] = mapped_column(String(64), default="")
    pdf_key: Mapped[str] = mapped_column(String(200), default="")
    pdf_sha256: Mapped[str] = mapped_column(String(64), default="")
    closed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    finalized_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class TranscriptEntry(Base):
    """A time-stamped statement in the transcript, written by the mediator and attributed to a participant."""

    __tablename__ = "transcript_entries"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    area: Mapped[str] = mapped_column(String(60))
    speaker_id: Mapped[str] = mapped_column(String(60))
    speaker_name: Mapped[str] = mapped_column(String(100))
    speaker_role: Mapped[str] = mapped_column(String(12))
    text: Mapped[str] = mapped_column(Text)
    author_id: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("session_id", "seq", name="uq_transcript_entry_seq"),)


class TranscriptSignoff(Base):
    """A party's confirmation (or objection) of one revision of the transcript."""

    __tablename__ = "transcript_signoffs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    participant_id: Mapped[str] = mapped_column(String(60))
    party_id: Mapped[int | None] = mapped_column(ForeignKey("parties.id"), nullable=True)
    name: Mapped[str] = mapped_column(String(100))
    agree: Mapped[bool] = mapped_column(Boolean)
    recording_consent: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    content_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# --- recordings: one row per file and one per recording run (its signed manifest)


class RecordingRun(Base):
    """One start-to-stop recording of a session: its signed manifest (recordings/manifest.py)."""

    __tablename__ = "recording_runs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    run_key: Mapped[str] = mapped_column(String(80), unique=True)
    status: Mapped[str] = mapped_column(String(12))  # complete | interrupted
    started_at: Mapped[dt.datetime] = mapped_column()
    stopped_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(200))
    public_key: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RecordingFile(Base):
    __tablename__ = "recording_files"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("recording_runs.id"), index=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    participant_id: Mapped[str] = mapped_column(String(60))
    name: Mapped[str] = mapped_column(String(100), default="")
    role: Mapped[str] = mapped_column(String(12), default="")
    segment: Mapped[int] = mapped_column(Integer)
    container: Mapped[str] = mapped_column(String(12))
    codecs: Mapped[str] = mapped_column(String(60))
    kinds: Mapped[str] = mapped_column(String(20))
    offset: Mapped[float] = mapped_column(Float)
    duration: Mapped[float] = mapped_column(Float)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    playable: Mapped[bool] = mapped_column(Boolean, default=True)


# --- follow-through after the agreement (docs/procedure.md, "After the agreement"): the terms watched
# until performed, the parties' reports, follow-up (回访) and review tasks, the parties' satisfaction
# ratings (好差评). Written by server/services/outcome/{performance,followup,satisfaction}.py.


class Obligation(Base):
    """One term of an agreement in effect that a party must carry out by a day: watched until performed."""

    __tablename__ = "obligations"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreements.id"))
    term: Mapped[int] = mapped_column(Integer)  # the term's number in the agreement (1, 2, ...)
    text: Mapped[str] = mapped_column(Text)
    obligor_party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    due_on: Mapped[str] = mapped_column(String(10))  # the last day to perform (YYYY-MM-DD, centre's time zone)
    due_at: Mapped[dt.datetime] = mapped_column()     # the first moment it is overdue
    # open | claimed | performed | not_performed | disputed | withdrawn (from the reports)
    status: Mapped[str] = mapped_column(String(16), default="open")
    reminders: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # days before -> when sent
    report_asked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("agreement_id", "term", name="uq_obligation_term"),
                      Index("ix_obligations_status_due", "status", "due_at"))


class ObligationReport(Base):
    """A party says an obligation was performed or not; the latest report of each party counts."""

    __tablename__ = "obligation_reports"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    obligation_id: Mapped[int] = mapped_column(ForeignKey("obligations.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    performed: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str] = mapped_column(Text, default="")
    via: Mapped[str] = mapped_column(String(16))  # link | access_code
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FollowTask(Base):
    """A task after the agreement: the mediator's follow-up (回访) or the institution's review of a poor rating.
    Its time limit is a deadline row of the same rule (server/services/procedure/deadlines.py)."""

    __tablename__ = "follow_tasks"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(12))  # followup | review
    rule: Mapped[str] = mapped_column(String(30))  # followup | followup_failed | review
    rating_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # review: the rating (ratings.id)
    status: Mapped[str] = mapped_column(String(12), default="open")  # open | done
    due_on: Mapped[str] = mapped_column(String(10))
    outcome: Mapped[str] = mapped_column(String(20), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    done_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    done_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_follow_tasks_status_kind", "status", "kind"),)


class Rating(Base):
    """好差评: one rating of the service per party and matter, with the institution and mediator it rates."""

    __tablename__ = "ratings"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    level: Mapped[int] = mapped_column(Integer)  # 5 very satisfied ... 1 very dissatisfied
    comment: Mapped[str] = mapped_column(Text, default="")
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    mediator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    stage: Mapped[str] = mapped_column(String(12))  # session (after a session) | end (the case concluded)
    via: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("case_id", "party_id", name="uq_rating_case_party"),)


class CourtReview(Base):
    """司法确认在线审查: the court asked (signed callback) for an online review of a pending judicial-confirmation
    application; a session of the case at the court's time, the judge's observer link, the decision that came back.
    Written by server/services/outcome/review.py."""

    __tablename__ = "court_reviews"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("court_submissions.id"), index=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), unique=True)
    judge_invite_id: Mapped[int | None] = mapped_column(ForeignKey("invites.id"), nullable=True)
    court_id: Mapped[str] = mapped_column(String(40))
    court_name: Mapped[str] = mapped_column(String(200))
    judge: Mapped[str] = mapped_column(String(100))
    starts_at: Mapped[dt.datetime] = mapped_column()
    duration_minutes: Mapped[int] = mapped_column(Integer, default=60)
    decision: Mapped[str] = mapped_column(String(12), default="")  # "" | confirmed | rejected
    decided_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
