"""Procedure steps on the socket: join gates and the events that satisfy them, and the e-transcript.

Installed by `create_socketio` (`install(hub)`). Before entering, a participant may owe steps;
`join` is then refused, first step first:
- `consent_required` (parties): `{declined, offline: {institution, area, text}}`; answer with
  `consent.online {agree}` (a decline is recorded and answered with the offline alternative);
- `identity_required` (parties, unless IDENTITY_CHECK=off): `{methods, fields, attempts_left}`;
  answer with `identity.verify {name, id_number_last6, access_code}` or, after
  `identity.sms_request {}`, `identity.verify {sms_code}`; a failure is refused with
  `identity_failed` (or `identity_locked`) and `attempts_left`, and logged;
- `notice_required`: `{notices: [{id, title, text}]}`; answer with `notice.ack {notices}`.
Then the client joins again on the same connection. `procedure.check {token, lang?}` answers the
same questions without joining (the step page at /join/<token>/checks uses it), and
`recusal.request {reason}` lets a party ask for a different mediator.

In the room: `transcript.add {text, speaker_id}` (mediator; speaker_id a participant's, or "parties"
for both parties) is pushed as `transcript.entry` to the participants in the mediator's area;
`transcript.edit {entry_id, text, speaker_id?}` and `transcript.delete {entry_id}` (the mediator,
entries of the area they are in, before closing) push `transcript.entry` (again) and
`transcript.deleted {entry_id}` there; `transcript.list {}`; `transcript.close {mode, facts?}`
(mediator) pushes `transcript.review` to the parties; `transcript.confirm {agree,
recording_consent?, note?}` (parties); `transcript.finalized {pdf_sha256}` when all confirmed.
The mediator gets `procedure.status {participants: [{participant_id, consent, verified, ...}]}`
whenever someone joins or verifies, and can ask for it with `procedure.status {}`.
"""
from __future__ import annotations

import logging
from http.cookies import SimpleCookie
from typing import Annotated

from pydantic import ConfigDict, StringConstraints

from rooms.participant import LOBBY
from server.core.i18n import LANGS, pick_lang, translator
from server.core.schemas import Checked
from server.services import directory
from server.services.notify import messages as notify
from server.services.procedure import rules as procedure
from server.services.procedure import transcript as transcript_svc
from server.services.live import Pass

from signaling.hub import Hub, LiveRoom, fail

log = logging.getLogger("mediation.signaling.procedure")
BOTH_PARTIES = "parties"  # a transcript entry's speaker: both parties at once


class _Ev(Checked):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Check(_Ev):
    token: Annotated[str, StringConstraints(min_length=10, max_length=4096)]
    lang: Annotated[str, StringConstraints(max_length=8)] | None = None


class Recusal(_Ev):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=1000)]


class Empty(_Ev):
    pass


def install(hub: Hub) -> "Procedure":
    return Procedure(hub)


class Procedure:
    def __init__(self, hub: Hub):
        self.hub = hub
        self.langs: dict[str, str] = {}
        hub.join_gates.append(self.gate)
        hub.on_joined.append(self.joined)
        for name, model, fn in (
            ("procedure.check", Check, self.check),
            ("consent.online", procedure.ConsentIn, self.consent),
            ("identity.verify", procedure.IdentityIn, self.identity),
            ("identity.sms_request", Empty, self.sms_request),
            ("notice.ack", procedure.NoticeAckIn, self.notice_ack),
            ("recusal.request", Recusal, self.recusal),
        ):
            hub.add_event(name, model, fn, needs_join=False)
        for name, model, fn in (
            ("transcript.add", transcript_svc.EntryIn, self.transcript_add),
            ("transcript.edit", transcript_svc.EntryEditIn, self.transcript_edit),
            ("transcript.delete", transcript_svc.EntryRef, self.transcript_delete),
            ("transcript.list", Empty, self.transcript_list),
            ("transcript.close", transcript_svc.CloseIn, self.transcript_close),
            ("transcript.confirm", transcript_svc.ConfirmIn, self.transcript_confirm),
            ("procedure.status", Empty, self.status),
        ):
            hub.add_event(name, model, fn)
    # ------------------------------------------------------------------ helpers

    def lang(self, sid: str) -> str:
        if sid in self.langs:
            return self.langs[sid]
        try:
            environ = self.hub.sio.get_environ(sid) or {}
        except Exception:  # noqa: BLE001 - no environ: the default language
            environ = {}
        cookie_lang = None
        raw = environ.get("HTTP_COOKIE", "")
        if raw:
            c = SimpleCookie()
            try:
                c.load(raw)
                cookie_lang = c["lang"].value if "lang" in c else None
            except Exception:  # noqa: BLE001 - a malformed cookie header
                cookie_lang = None
        query_lang = None
        for part in (environ.get("QUERY_STRING") or "").split("&"):
            if part.startswith("lang="):
                query_lang = part[5:]
        return pick_lang(query_lang, cookie_lang, environ.get("HTTP_ACCEPT_LANGUAGE"))

    def pass_of(self, sid: str) -> Pass | None:
        p = self.hub.pending.get(sid)
        if p is not None:
            return p
        where = self.hub.by_sid.get(sid)
        if where is None:
            return None
        live = self.hub.rooms.get(where[0])
        return live.passes.get(where[1]) if live else None

    async def refusal(self, s, sid: str, p: Pass, steps: list[str]) -> dict:
        t = translator(self.lang(sid))
        code = steps[0]
        if code == "consent_required":
            party = await procedure.party_of_pass(s, p)
            consent = await procedure.consent_of(s, party.id) if party else None
            return fail(code, t("procedure.refusal.consent_required"), steps=steps,
                        declined=bool(consent is not None and not consent.agree),
                        offline=await self.offline(s, p, t))
        if code == "identity_required":
            failures = await procedure.recent_failures(s, p.session_id, p.participant_id)
            party = await procedure.party_of_pass(s, p)
            methods = ["access_code"]
            if notify.config().sms_enabled and party is not None and party.phone:
                methods.append("sms")
            left = max(procedure.MAX_IDENTITY_FAILURES - failures, 0)
            return fail(code, t("procedure.refusal.identity_required"), steps=steps, methods=methods,
                        fields=["name", "id_number_last6", "access_code"], attempts_left=left, locked=left == 0,
                        applicant=bool(party is not None and party.side == "applicant"))
        pending = await procedure.pending_notices(s, p.session_id, p.participant_id, p.role)
        return fail(code, t("procedure.refusal.notice_required"), steps=steps,
                    notices=[{"id": n, "title": t(f"procedure.notice.{n}.title"), "text": t(f"procedure.notice.{n}.text")}
                             for n in pending])

    @staticmethod
    async def offline(s, p: Pass, t) -> dict:
        case = await procedure._case(s, p.case_id)
        inst = await directory.get_institution(s, case.institution_id)
        name = inst.name if inst else ""
        return {"institution": name, "area": inst.area if inst else "",
                "text": t("procedure.offline.text").format(institution=name, area=inst.area if inst else "")}

    async def steps(self, p: Pass) -> list[str]:
        async with self.hub.db.read() as s:
            return await procedure.steps_for(s, p, identity_check=self.hub.settings.identity_check)

    # ------------------------------------------------------------------ the gate

    async def gate(self, sid: str, p: Pass) -> dict | None:
        async with self.hub.db.read() as s:
            steps = await procedure.steps_for(s, p, identity_check=self.hub.settings.identity_check)
            if not steps:
                return None
            return await self.refusal(s, sid, p, steps)

    async def check(self, sid: str, data: Check) -> dict:
        if data.lang in LANGS:
            if len(self.langs) > 1000:  # forget the connections that are gone
                live = set(self.hub.pending) | set(self.hub.by_sid)
                self.langs = {k: v for k, v in self.langs.items() if k in live}
            self.langs[sid] = data.lang
        async with self.hub.db.read() as s:
            p = await procedure.peek_pass(s, self.hub.settings.secret_key, data.token)
        self.hub.pending[sid] = p
        async with self.hub.db.read() as s:
            steps = await procedure.steps_for(s, p, identity_check=self.hub.settings.identity_check)
            first = await self.refusal(s, sid, p, steps) if steps else None
            case = await procedure._case(s, p.case_id)
            party = await procedure.party_of_pass(s, p)
        return {"steps": steps, "next": first["error"] if first else None,
                "participant": {"id": p.participant_id, "role": p.role, "name": p.name,
                                "side": party.side if party else None},
                "case": {"number": case.number, "title": case.title}, "room_url": f"/room/{data.token}"}

    # ------------------------------------------------------------------ the steps

    def _pending(self, sid: str) -> Pass | dict:
        p = self.hub.pending.get(sid)
        if p is None:
            return fail("not_pending", "Ask to join first.")
        return p

    async def consent(self, sid: str, data: procedure.ConsentIn) -> dict:
        p = self._pending(sid)
        if isinstance(p, dict):
            return p
        async with self.hub.db.session() as s:
            await procedure.consent_by_pass(s, p, data.agree)
            extra = {} if data.agree else {"offline": await self.offline(s, p, translator(self.lang(sid)))}
        return {"agree": data.agree, "steps": await self.steps(p), **extra}

    async def identity(self, sid: str, data: procedure.IdentityIn) -> dict:
        p = self._pending(sid)
        if isinstance(p, dict):
            return p
        async with self.hub.db.session() as s:
            result = await procedure.verify_identity(s, p, data, secret=self.hub.settings.secret_key)
        await self.push_status_for_room(p.room_id)
        if not result.ok:
            t = translator(self.lang(sid))
            code = result.code or "identity_failed"
            return fail(code, t(f"procedure.error.{code}"), attempts_left=result.attempts_left)
        return {"verified": True, "steps": await self.steps(p)}

    async def sms_request(self, sid: str, data: Empty) -> dict:
        p = self._pending(sid)
        if isinstance(p, dict):
            return p
        async with self.hub.db.session() as s:
            out = await procedure.request_sms_code(s, p, secret=self.hub.settings.secret_key)
        return out

    async def notice_ack(self, sid: str, data: procedure.NoticeAckIn) -> dict:
        p = self._pending(sid)
        if isinstance(p, dict):
            return p
        async with self.hub.db.session() as s:
            remaining = await procedure.ack_notices(s, p, data.notices)
        return {"pending": remaining, "steps": await self.steps(p)}

    async def recusal(self, sid: str, data: Recusal) -> dict:
        p = self.pass_of(sid)
        if p is None:
            return fail("not_pending", "Ask to join first.")
        async with self.hub.db.session() as s:
            req = await procedure.recusal_by_pass(s, p, data.reason)
        return {"request_id": req.id, "status": req.status}

    # ------------------------------------------------------------------ the mediator sees who is verified

    async def statuses(self, live: LiveRoom) -> list[dict]:
        passes = dict(live.passes)
        # Whoever is waiting at the steps for this room counts too: the mediator sees them coming.
        for p in list(self.hub.pending.values()):
            if p.room_id == live.room.id and p.participant_id not in passes:
                passes[p.participant_id] = p
        out = []
        async with self.hub.db.read() as s:
            for pid, p in passes.items():
                row = await procedure.participant_status(s, p, identity_check=self.hub.settings.identity_check)
                part = live.room.participants.get(pid)
                row["where"] = part.area if part else "steps"
                out.append(row)
        return out

    async def push_status(self, live: LiveRoom) -> None:
        holders = [pid for pid, part in live.room.participants.items() if part.can("admit")]
        if not holders:
            return
        data = {"participants": await self.statuses(live),
                "identity_check": bool(self.hub.settings.identity_check)}
        for pid in holders:
            await self.hub.emit_to(live, pid, "procedure.status", data)

    async def push_status_for_room(self, room_id: str) -> None:
        live = self.hub.rooms.get(room_id)
        if live is not None:
            try:
                await self.push_status(live)
            except Exception:  # noqa: BLE001 - a status push must not fail the step
                log.exception("procedure.status push failed")

    async def joined(self, live: LiveRoom, pid: str) -> None:
        await self.push_status(live)

    async def status(self, sid, live: LiveRoom, pid: str, data: Empty) -> dict:
        live.room.participant(pid).require("admit")
        return {"participants": await self.statuses(live), "identity_check": bool(self.hub.settings.identity_check)}

    # ------------------------------------------------------------------ the e-transcript

    def _area(self, live: LiveRoom, pid: str) -> str:
        part = live.room.participants.get(pid)
        return part.area if part else LOBBY

    def _speaker(self, live: LiveRoom, speaker_id: str) -> tuple[str, str, str] | None:
        """(id, name, role) of whom an entry is attributed to: someone in the room, or both parties."""
        if speaker_id == BOTH_PARTIES:
            return (BOTH_PARTIES, translator("zh-CN")("room.transcript.both_parties"), "party")
        speaker = live.passes.get(speaker_id)
        part = live.room.participants.get(speaker_id)
        if speaker is None and part is None:
            return None
        return (speaker_id, speaker.name if speaker else part.name, speaker.role if speaker else part.role)

    def _writer(self, live: LiveRoom, pid: str) -> tuple:
        """(author, area, None) for the mediator in the room; (.., .., the refusal) otherwise. The
        service checks the role again (server/services/procedure/transcript.py): this answers
        before the speaker is looked up, so a party learns nothing about who is in the room."""
        author, area = live.passes[pid], self._area(live, pid)
        if author.role != "mediator":
            return author, area, fail("forbidden", "Only the mediator keeps the transcript.")
        if area == LOBBY:
            return author, area, fail("in_lobby", "Write the transcript from the room.")
        return author, area, None

    async def _to_area(self, live: LiveRoom, area: str, event: str, data: dict) -> None:
        for other in list(live.sids):
            if self._area(live, other) == area:
                await self.hub.emit_to(live, other, event, data)

    async def transcript_add(self, sid, live: LiveRoom, pid: str, data: transcript_svc.EntryIn) -> dict:
        author, area, refused = self._writer(live, pid)
        if refused:
            return refused
        speaker = self._speaker(live, data.speaker_id)
        if speaker is None:
            return fail("not_found", "No such participant.")
        async with self.hub.db.session() as s:
            entry = await transcript_svc.add_entry(s, author, area, speaker, data.text)
            out = transcript_svc.entry_json(entry)
        await self._to_area(live, area, "transcript.entry", out)
        return {"entry": out}

    async def transcript_edit(self, sid, live: LiveRoom, pid: str, data: transcript_svc.EntryEditIn) -> dict:
        author, area, refused = self._writer(live, pid)
        if refused:
            return refused
        speaker = None
        if data.speaker_id is not None:
            speaker = self._speaker(live, data.speaker_id)
            if speaker is None:
                return fail("not_found", "No such participant.")
        async with self.hub.db.session() as s:
            entry = await transcript_svc.edit_entry(s, author, area, data.entry_id, data.text, speaker)
            out = transcript_svc.entry_json(entry)
        await self._to_area(live, area, "transcript.entry", out)
        return {"entry": out}

    async def transcript_delete(self, sid, live: LiveRoom, pid: str, data: transcript_svc.EntryRef) -> dict:
        author, area, refused = self._writer(live, pid)
        if refused:
            return refused
        async with self.hub.db.session() as s:
            await transcript_svc.delete_entry(s, author, area, data.entry_id)
        await self._to_area(live, area, "transcript.deleted", {"entry_id": data.entry_id})
        return {}

    async def transcript_list(self, sid, live: LiveRoom, pid: str, data: Empty) -> dict:
        p = live.passes[pid]
        area = None if p.role == "mediator" else self._area(live, pid)
        if area == LOBBY:
            return {"entries": []}
        async with self.hub.db.read() as s:
            rows = await transcript_svc.entries(s, live.session_id, area)
            view = await transcript_svc.view(s, live.session_id)
        # Who has signed off this revision (the mediator's list), and the final PDF's hash once final.
        signoffs = [so for so in view["signoffs"] if so["revision"] == view["revision"]] if area is None else []
        return {"entries": [transcript_svc.entry_json(e) for e in rows], "status": view["status"],
                "mode": view["mode"], "revision": view["revision"], "facts": view["facts"],
                "signoffs": signoffs, "pdf_sha256": view["pdf_sha256"] or None}

    async def transcript_close(self, sid, live: LiveRoom, pid: str, data: transcript_svc.CloseIn) -> dict:
        async with self.hub.db.session() as s:
            tr, rows = await transcript_svc.close(s, live.passes[pid], data)
            review = {"mode": tr.mode, "facts": tr.facts, "revision": tr.revision,
                      "content_sha256": tr.content_sha256, "entries": [transcript_svc.entry_json(e) for e in rows]}
        for other, p in list(live.passes.items()):
            if p.role in ("party", "mediator"):
                await self.hub.emit_to(live, other, "transcript.review", review)
        return {"review": review}

    async def transcript_confirm(self, sid, live: LiveRoom, pid: str, data: transcript_svc.ConfirmIn) -> dict:
        p = live.passes[pid]
        data_dir = self.hub.settings.data_dir
        async with self.hub.db.session() as s:
            result = await transcript_svc.confirm(s, p, data, data_dir=data_dir)
            tr = result.transcript
            out = {"finalized": result.finalized, "waiting_for": result.waiting_for, "revision": tr.revision,
                   "pdf_sha256": tr.pdf_sha256 or None}
        signoff = {"participant_id": pid, "name": p.name, "agree": data.agree, "note": data.note,
                   "revision": out["revision"]}
        for other, q in list(live.passes.items()):
            if q.role == "mediator":
                await self.hub.emit_to(live, other, "transcript.signoff", signoff)
        if result.finalized:
            for other in list(live.sids):
                await self.hub.emit_to(live, other, "transcript.finalized",
                                       {"pdf_sha256": out["pdf_sha256"], "revision": out["revision"]})
        return out


__all__ = ["install", "Procedure"]
