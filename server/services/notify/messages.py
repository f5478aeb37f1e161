"""Notifications to parties, experts and staff, in Chinese or English, over SMS and e-mail.

Every message is a job of the persistent outbox (server/infra/outbox.py), written in the same
transaction as the change it reports, so a gateway outage or a restart loses nothing; jobs are
retried with backoff and carry an idempotency key (the job key) that the SMS gateway and the
Message-ID of an e-mail repeat on every try.

Channels sit behind one interface (`Channel.send(message, key)`), chosen per medium when the
job is delivered:
- SMS: an HTTP gateway (`SMS_GATEWAY_URL`, optional `SMS_GATEWAY_TOKEN`): POST JSON
  `{"to", "text", "key"}` with the header `Idempotency-Key`; 2xx is delivered, 4xx (other than
  408/429) is a permanent failure, anything else is retried.
- E-mail: SMTP (`SMTP_HOST`, `SMTP_PORT`, `SMTP_FROM`, optional `SMTP_USER`/`SMTP_PASSWORD`,
  `SMTP_STARTTLS=on`); a session invitation carries an .ics attachment.
- Without a gateway or mail server (the default), a development adapter writes each message
  as a JSON file under `$MEDIATION_DATA_DIR/outbox/<medium>/`.

Texts are the `notify.<event>.{sms,subject,body}` keys of web/i18n/procedure.<lang>.json.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import smtplib
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

import aiohttp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.infra import outbox
from server.infra.files import atomic_write
from server.core.i18n import LANGS, translator
from server.core.models import Case, Contact, Institution, OutboxJob, Party, User

log = logging.getLogger("mediation.notify")

MEDIA = ("sms", "email")


def _on(value: str) -> bool:
    return value.strip().lower() in ("1", "on", "yes", "true")


@dataclass
class NotifyConfig:
    public_url: str = "http://127.0.0.1:8080"
    outbox_dir: Path = Path("var/outbox")
    sms_gateway_url: str = ""
    sms_gateway_token: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "mediation@localhost"
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    timeout: float = 10.0
    reminder_minutes: int = 24 * 60  # the reminder goes this long before a session

    @classmethod
    def from_env(cls, settings=None, env=None) -> "NotifyConfig":
        env = os.environ if env is None else env
        data_dir = Path(settings.data_dir) if settings is not None else Path(env.get("MEDIATION_DATA_DIR", "var"))
        return cls(
            public_url=(settings.public_url if settings is not None
                        else env.get("PUBLIC_URL", "http://127.0.0.1:8080")).rstrip("/"),
            outbox_dir=Path(env.get("NOTIFY_OUTBOX_DIR") or data_dir / "outbox"),
            sms_gateway_url=env.get("SMS_GATEWAY_URL", "").strip(),
            sms_gateway_token=env.get("SMS_GATEWAY_TOKEN", "").strip(),
            smtp_host=env.get("SMTP_HOST", "").strip(),
            smtp_port=int(env.get("SMTP_PORT", "25") or 25),
            smtp_from=env.get("SMTP_FROM", "mediation@localhost").strip(),
            smtp_user=env.get("SMTP_USER", ""),
            smtp_password=env.get("SMTP_PASSWORD", ""),
            smtp_starttls=_on(env.get("SMTP_STARTTLS", "")),
            reminder_minutes=int(env.get("SESSION_REMINDER_MINUTES", str(24 * 60)) or 0),
        )

    @property
    def sms_enabled(self) -> bool:
        """A real SMS gateway is configured (then one-time identity codes are offered)."""
        return bool(self.sms_gateway_url)


_config: NotifyConfig | None = None


def configure(cfg: NotifyConfig) -> None:
    global _config
    _config = cfg


def config() -> NotifyConfig:
    global _config
    if _config is None:
        _config = NotifyConfig.from_env()
    return _config


# --- channels ------------------------------------------------------------------------------------

class Channel:
    """Delivers one rendered message; raises to be retried, outbox.PermanentFailure to give up."""

    medium = ""

    async def send(self, msg: dict, key: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class FolderChannel(Channel):
    """Development adapter: one JSON file per message (same key, same file: a retry overwrites)."""

    def __init__(self, medium: str, folder: Path):
        self.medium = medium
        self.folder = Path(folder) / medium

    async def send(self, msg: dict, key: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:150] + ".json"
        atomic_write(self.folder / name, json.dumps({**msg, "key": key}, ensure_ascii=False, indent=2).encode())


class SmsGateway(Channel):
    medium = "sms"

    def __init__(self, url: str, token: str = "", timeout: float = 10.0):
        self.url, self.token, self.timeout = url, token, timeout

    async def send(self, msg: dict, key: str) -> None:
        headers = {"Idempotency-Key": key}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        body = {"to": msg["to"], "text": msg["text"], "key": key}
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.post(self.url, json=body, headers=headers) as resp:
                text = (await resp.text())[:300]
                if 200 <= resp.status < 300:
                    return
                if 400 <= resp.status < 500 and resp.status not in (408, 425, 429):
                    raise outbox.PermanentFailure(f"SMS gateway refused the message: {resp.status} {text}")
                raise ConnectionError(f"SMS gateway answered {resp.status} {text}")


class SmtpChannel(Channel):
    medium = "email"

    def __init__(self, cfg: NotifyConfig):
        self.cfg = cfg

    def _message(self, msg: dict, key: str) -> EmailMessage:
        m = EmailMessage()
        m["From"] = self.cfg.smtp_from
        m["To"] = msg["to"]
        m["Subject"] = msg.get("subject", "")
        m["Date"] = formatdate(localtime=False)
        # The same job (retried) keeps the same Message-ID, so a receiver can drop a duplicate.
        domain = self.cfg.smtp_from.rpartition("@")[2] or "localhost"
        m["Message-ID"] = f"<{re.sub(r'[^A-Za-z0-9_.-]', '.', key)}@{domain}>"
        m["Content-Language"] = msg.get("lang", "zh-CN")
        m.set_content(msg.get("text", ""))
        if msg.get("ics"):
            m.add_attachment(msg["ics"].encode("utf-8"), maintype="text", subtype="calendar",
                             filename="mediation.ics", params={"method": "PUBLISH", "charset": "utf-8"})
        return m

    def _send_sync(self, message: EmailMessage) -> None:
        try:
            with smtplib.SMTP(self.cfg.smtp_host, self.cfg.smtp_port, timeout=self.cfg.timeout) as smtp:
                if self.cfg.smtp_starttls:
                    smtp.starttls()
                if self.cfg.smtp_user:
                    smtp.login(self.cfg.smtp_user, self.cfg.smtp_password)
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise outbox.PermanentFailure(f"mail server refused the recipient: {exc.recipients}") from exc

    async def send(self, msg: dict, key: str) -> None:
        await asyncio.to_thread(self._send_sync, self._message(msg, key))


def channel_for(medium: str) -> Channel:
    cfg = config()
    if medium == "sms" and cfg.sms_gateway_url:
        return SmsGateway(cfg.sms_gateway_url, cfg.sms_gateway_token, cfg.timeout)
    if medium == "email" and cfg.smtp_host:
        return SmtpChannel(cfg)
    return FolderChannel(medium, cfg.outbox_dir)


@outbox.handler("notify.sms")
async def _deliver_sms(payload: dict, job: OutboxJob) -> None:
    await channel_for("sms").send(payload, job.key)


@outbox.handler("notify.email")
async def _deliver_email(payload: dict, job: OutboxJob) -> None:
    await channel_for("email").send(payload, job.key)


# --- recipients and templates -------------------------------------------------------------------------

@dataclass
class Recipient:
    ref: str                   # party:12 | user:3 | expert:4
    name: str = ""
    phone: str = ""
    email: str = ""
    lang: str = "zh-CN"
    extra: dict = field(default_factory=dict)  # what only this recipient's message says (their link, code)


async def _contacts(s: AsyncSession, kind: str, ids: list[int]) -> dict[int, Contact]:
    if not ids:
        return {}
    rows = (await s.execute(select(Contact).where(Contact.kind == kind, Contact.ref_id.in_(ids)))).scalars()
    return {c.ref_id: c for c in rows}


async def party_recipients(s: AsyncSession, parties: list[Party]) -> list[Recipient]:
    contacts = await _contacts(s, "party", [p.id for p in parties])
    out = []
    for p in parties:
        c = contacts.get(p.id)
        out.append(Recipient(ref=f"party:{p.id}", name=p.name, phone=(c.phone if c and c.phone else p.phone),
                             email=c.email if c else "", lang=(c.lang if c and c.lang in LANGS else "zh-CN"),
                             extra={"party_id": p.id, "side": p.side}))
    return out


async def user_recipients(s: AsyncSession, users: list[User]) -> list[Recipient]:
    contacts = await _contacts(s, "user", [u.id for u in users])
    out = []
    for u in users:
        c = contacts.get(u.id)
        if c is None or not (c.email or c.phone):
            continue  # staff without a contact see it in their portal
        out.append(Recipient(ref=f"user:{u.id}", name=u.name or u.username, phone=c.phone, email=c.email,
                             lang=c.lang if c.lang in LANGS else "zh-CN"))
    return out


async def intake_recipients(s: AsyncSession, institution_id: int) -> list[Recipient]:
    users = (await s.execute(select(User).where(User.role == "intake", User.active.is_(True),
                                                User.institution_id == institution_id))).unique().scalars().all()
    return await user_recipients(s, list(users))


async def mediator_recipients(s: AsyncSession, mediator_id: int | None) -> list[Recipient]:
    if mediator_id is None:
        return []
    u = await s.get(User, mediator_id)
    return await user_recipients(s, [u]) if u is not None and u.active else []


def render(event: str, lang: str, ctx: dict) -> dict:
    t = translator(lang if lang in LANGS else "zh-CN")
    safe = _Defaults(ctx)
    return {key: t(f"notify.{event}.{key}").format_map(safe) for key in ("sms", "subject", "body")}


class _Defaults(dict):
    def __missing__(self, key):
        return ""


def _mask(r: Recipient, medium: str) -> str:
    if medium == "sms":
        return r.phone[:3] + "****" + r.phone[-4:] if len(r.phone) >= 7 else "***"
    user, _, domain = r.email.partition("@")
    return (user[:1] + "***@" + domain) if domain else "***"


async def send(s: AsyncSession, event: str, recipients: list[Recipient], ctx: dict, *, key: str,
               case_id: int | None = None, session_id: int | None = None, delay: float = 0.0,
               ics: str | None = None) -> list[OutboxJob]:
    """Queue one event for every recipient on every medium they can be reached by. The outbox rows
    are the record of what was sent to whom (not the audit chain: a message is not a step of the case)."""
    cfg = config()
    base = {"public_url": cfg.public_url, "lookup_url": f"{cfg.public_url}/lookup", **ctx}
    jobs = []
    for r in recipients:
        for medium in MEDIA:
            address = r.phone if medium == "sms" else r.email
            if not address:
                continue
            body = {**base, **r.extra, "name": r.name}
            texts = render(event, r.lang, body)
            payload = {"event": event, "medium": medium, "to": address, "lang": r.lang, "ref": r.ref,
                       "case_id": case_id, "session_id": session_id, "masked_to": _mask(r, medium), "subject": texts["subject"],
                       "text": texts["sms"] if medium == "sms" else texts["body"]}
            if medium == "email" and ics:
                payload["ics"] = ics
            jobs.append(await outbox.enqueue(s, f"notify.{medium}", payload,
                                             key=f"{key}:{r.ref}:{medium}"[:120], delay=delay))
    return jobs


async def cancel(s: AsyncSession, key_prefix: str) -> int:
    """Withdraw queued messages not yet sent (e.g. the reminder of a session that moved)."""
    rows = (await s.execute(select(OutboxJob).where(OutboxJob.status == "pending",
                                                    OutboxJob.key.like(key_prefix + "%")))).scalars().all()
    for job in rows:
        job.status = "cancelled"
    return len(rows)


# --- what the case's steps tell whom -----------------------------------------------------------------------

def _applicant(case: Case) -> list[Party]:
    return [p for p in case.parties if p.side == "applicant"]


async def case_event(s: AsyncSession, case: Case, action: str, data: dict) -> None:
    """Called with every step of a case (services.procedure.after_case_action)."""
    cfg = config()
    # A case filed in this very transaction has not loaded its institution: ask by id.
    inst = await s.get(Institution, case.institution_id)
    ctx = {"number": case.number, "title": case.title, "institution": inst.name if inst else "",
           "case_url": f"{cfg.public_url}/staff/cases/{case.id}"}
    key = f"case:{case.id}:{action}:{uuid.uuid4().hex[:8]}"
    if action == "filed":
        await send(s, "case_filed", await party_recipients(s, _applicant(case)),
                   {**ctx, "access_code": data.get("access_code", "")}, key=key, case_id=case.id)
        await send(s, "case_new", await intake_recipients(s, case.institution_id), ctx, key=key + ":intake",
                   case_id=case.id)
    elif action == "settle":
        # The agreement took effect: every party is told, with the 30-day judicial-confirmation window.
        await send(s, "case_settled", await party_recipients(s, list(case.parties)),
                   {**ctx, "deadline": data.get("confirmation_deadline", "")}, key=key, case_id=case.id)
    elif action == "accept":
        await send(s, "case_accepted", await party_recipients(s, _applicant(case)), ctx, key=key, case_id=case.id)
    elif action == "reject":
        await send(s, "case_rejected", await party_recipients(s, _applicant(case)),
                   {**ctx, "reason": data.get("reason", "")}, key=key, case_id=case.id)
    elif action == "transfer":
        target = await s.get(Institution, data.get("to_institution"))
        name = target.name if target else ""
        await send(s, "case_transferred", await party_recipients(s, _applicant(case)),
                   {**ctx, "to_institution": name, "reason": data.get("reason", "")}, key=key, case_id=case.id)
        if target is not None:
            await send(s, "case_new", await intake_recipients(s, target.id), {**ctx, "institution": name},
                       key=key + ":intake", case_id=case.id)
    elif action == "assign":
        mediator = await s.get(User, data.get("mediator_id"))
        mname = (mediator.name or mediator.username) if mediator else ""
        await send(s, "mediator_assigned", await party_recipients(s, list(case.parties)),
                   {**ctx, "mediator": mname}, key=key, case_id=case.id)
        await send(s, "case_assigned", await mediator_recipients(s, data.get("mediator_id")),
                   {**ctx, "mediator": mname}, key=key + ":mediator", case_id=case.id)
    elif action == "unassign":
        await send(s, "case_returned", await intake_recipients(s, case.institution_id),
                   {**ctx, "reason": data.get("reason_text", "")}, key=key, case_id=case.id)


async def jobs_for_case(s: AsyncSession, case_id: int) -> list[OutboxJob]:
    """The SMS and e-mail jobs about one case, oldest first (callers check who may see the case)."""
    return list((await s.execute(select(OutboxJob).where(OutboxJob.kind.in_(("notify.sms", "notify.email")),
                                                         OutboxJob.payload["case_id"].as_integer() == case_id)
                                 .order_by(OutboxJob.id))).scalars().all())
