"""Recordings on the case: runs with signed manifests, their files, crash recovery, checks.

The recorder itself (recordings/) knows nothing of cases; this module attaches what it
produced to the session and the audit chain, and finds what a killed process left behind.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from recordings.manifest import INTERRUPTED, MEDIA_SUFFIXES, load_or_create_signing_key, load_signed_manifest, manifest_digest, manifest_key, owner_key, parse_iso_time, read_owner, verify_recording, write_owner
from recordings.recover import recover
from recordings.storage import DirectoryStore

from server.core import audit
from server.core.errors import NotFound
from server.core import serialize as ser
from server.core.models import AuditEntry, MediationSession, RecordingFile, RecordingRun
from server.services.archive import records as archive
from server.services.cases import view as view_case
from server.services.sessions import get_session

log = logging.getLogger("mediation.recordings")

RUN_KEY = re.compile(r"^s(\d+)-\d{8}T\d{6}(?:-\d+)?$")


def store_for(settings) -> DirectoryStore:
    settings.recordings_dir.mkdir(parents=True, exist_ok=True)
    return DirectoryStore(settings.recordings_dir)


def signing_key(settings):
    """The server's Ed25519 key for manifests (created once, 0600, beside the data)."""
    return load_or_create_signing_key(settings.data_dir / "recording-signing-key.pem")


def new_run_key(store, session_id: int) -> str:
    base = f"s{session_id}-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}"
    key, n = base, 1
    while store.list(key):
        n += 1
        key = f"{base}-{n}"
    return key


def _when(iso: str | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(parse_iso_time(iso), dt.timezone.utc) if iso else None


async def attach(s: AsyncSession, session_id: int, document: dict, *, actor: audit.ActorRef | None = None) -> RecordingRun:
    """Record a signed manifest and its files with the session, and its hash in the audit chain."""
    body = document["manifest"]
    run = RecordingRun(session_id=session_id, run_key=body["session_key"], status=body["status"],
                       started_at=_when(body["started_at"]), stopped_at=_when(body.get("stopped_at")),
                       manifest_sha256=manifest_digest(body), signature=document["signature"]["value"],
                       public_key=document["signature"]["public_key"])
    s.add(run)
    await s.flush()
    for f in body["files"]:
        s.add(RecordingFile(run_id=run.id, session_id=session_id, key=f["key"], participant_id=f["participant_id"],
                            name=f.get("name") or "", role=f.get("role") or "", segment=f["segment"],
                            container=f["container"], codecs=",".join(sorted({x["codec"] for x in f["streams"]})),
                            kinds=",".join(sorted({x["kind"] for x in f["streams"]})), offset=f["offset"],
                            duration=f["duration"], size=f["size"], sha256=f["sha256"],
                            playable=bool(f.get("playable", True))))
    sess = await s.get(MediationSession, session_id)
    await audit.append(s, actor or audit.SYSTEM,
                       "recording.interrupted" if body["status"] == INTERRUPTED else "recording.stopped",
                       case_id=sess.case_id if sess else None, session_id=session_id,
                       data={"run": run.run_key, "manifest_sha256": run.manifest_sha256,
                             "files": [{"key": f["key"], "sha256": f["sha256"], "size": f["size"],
                                        "participant": f["participant_id"], "duration": f["duration"]}
                                       for f in body["files"]]})
    return run


@dataclass
class RecoveredRun:
    run_key: str
    session_id: int
    owner: str | None  # the node that was writing it (None: a run from before owners were recorded)
    status: str  # the manifest's: interrupted, or complete when the writer had finished it
    files: int


@dataclass
class Recovery:
    recovered: list[RecoveredRun] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run key, why)


def _has_content(store: DirectoryStore, run_key: str) -> bool:
    return any(k.endswith(MEDIA_SUFFIXES) or k == manifest_key(run_key) for k in store.list(run_key))


def _claim(store: DirectoryStore, run_key: str, node_id: str) -> bool:
    """Make an ownerless run this node's; False if another process claimed it first."""
    try:
        write_owner(store, run_key, node_id)
        store.finalize(owner_key(run_key))
        return True
    except FileExistsError:
        return read_owner(store, run_key) == node_id


async def recover_runs(db, settings, *, node: str | None, unowned: bool = False, claim: bool = False) -> Recovery:
    """Finalise (recordings.recover: remux, sign an "interrupted" manifest) and attach to
    their sessions the runs under RECORDINGS_DIR that the database does not know yet.

    node: only runs whose owner record names this node; None: every run, whoever wrote
    it. unowned: also runs without an owner record (written before owners were recorded);
    with claim they are first claimed for `node`, so two nodes starting at once never
    both recover one. Never call it for a node that may still be writing (recovery
    remuxes the files in place)."""
    recovery = Recovery()
    if not settings.recordings_dir.exists():
        return recovery
    store = store_for(settings)
    key = signing_key(settings)
    async with db.read() as s:
        known = set((await s.execute(select(RecordingRun.run_key))).scalars().all())
    entries = sorted(p.name for p in settings.recordings_dir.iterdir() if p.is_dir())
    for entry in entries:
        m = RUN_KEY.match(entry)
        if not m or entry in known:
            continue
        owner = await asyncio.to_thread(read_owner, store, entry)
        if node is not None and owner != node:
            if owner is not None or not unowned:
                continue
            # No owner record: an old run, or one whose recorder is creating it right now
            # (its directory exists a moment before the record: nothing in it yet).
            if not await asyncio.to_thread(_has_content, store, entry):
                continue
            if claim and not await asyncio.to_thread(_claim, store, entry, node):
                continue
        try:
            await asyncio.to_thread(recover, store, entry, signing_key=key)
            document = await asyncio.to_thread(load_signed_manifest, store, entry)
        except Exception as exc:  # noqa: BLE001 - one broken run must not stop the others
            log.exception("could not recover recording %s", entry)
            recovery.failed.append((entry, f"cannot be finalised: {exc!r}"))
            continue
        session_id = int(m.group(1))
        try:
            async with db.session() as s:
                if await s.get(MediationSession, session_id) is None:
                    log.warning("recording %s belongs to no known session; left on disk", entry)
                    recovery.failed.append((entry, f"session {session_id} does not exist; left on disk"))
                    continue
                await attach(s, session_id, document)
        except IntegrityError:
            log.info("recording %s was attached by another process meanwhile", entry)
            continue
        recovery.recovered.append(RecoveredRun(entry, session_id, owner, document["manifest"]["status"],
                                               len(document["manifest"]["files"])))
    return recovery


async def recover_interrupted(db, settings) -> list[str]:
    """On start: finalise and attach what a killed process of this node was recording.
    Returns the run keys recovered.

    Without REDIS_URL there is one node: every unfinished run is its own, whatever node
    id wrote it (a container's host name may change between starts), and a session still
    marked live really was interrupted by the restart. With Redis several nodes may share
    RECORDINGS_DIR: only this node's runs (and old runs without an owner record) are
    recovered, and live sessions are left alone (another node carries them on). A dead
    node's runs: `mediation recordings recover --node NODE_ID`."""
    single = not settings.redis_url
    found = await recover_runs(db, settings, node=None if single else settings.node_id, unowned=True,
                               claim=not single)
    if single:
        async with db.session() as s:
            live = (await s.execute(select(MediationSession).where(MediationSession.status == "live"))).scalars().all()
            for sess in live:
                sess.status = "interrupted"
                await audit.append(s, audit.SYSTEM, "session.interrupted", case_id=sess.case_id, session_id=sess.id,
                                   data={"reason": "server restarted"})
    return [r.run_key for r in found.recovered]


async def runs_of(s: AsyncSession, session_id: int) -> list[tuple[RecordingRun, list[RecordingFile]]]:
    runs = (await s.execute(select(RecordingRun).where(RecordingRun.session_id == session_id)
                            .order_by(RecordingRun.id))).scalars().all()
    out = []
    for run in runs:
        files = (await s.execute(select(RecordingFile).where(RecordingFile.run_id == run.id)
                                 .order_by(RecordingFile.offset, RecordingFile.id))).scalars().all()
        out.append((run, list(files)))
    return out


async def file_row(s: AsyncSession, file_id: int) -> RecordingFile:
    row = await s.get(RecordingFile, file_id)
    if row is None:
        raise NotFound("No such recording.")
    return row


async def verify_session(s: AsyncSession, settings, session_id: int) -> list[str]:
    """Recheck every run of a session: manifest signature, every file's size and SHA-256, and
    that the database record agrees with the signed manifest. Returns what does not match."""
    store = store_for(settings)
    public = signing_key(settings).public_key()
    problems: list[str] = []
    for run, files in await runs_of(s, session_id):
        for p in await asyncio.to_thread(verify_recording, store, run.run_key, public):
            problems.append(f"{run.run_key}: {p.message}")
        try:
            body = (await asyncio.to_thread(load_signed_manifest, store, run.run_key))["manifest"]
        except (FileNotFoundError, ValueError):
            continue  # already reported by verify_recording
        if manifest_digest(body) != run.manifest_sha256:
            problems.append(f"{run.run_key}: the manifest differs from the one recorded with the case")
        listed = {f["key"]: f for f in body["files"]}
        for row in files:
            f = listed.get(row.key)
            if f is None or f["sha256"] != row.sha256 or f["size"] != row.size:
                problems.append(f"{row.key}: the case record and the signed manifest disagree")
    return problems


__all__ = ["store_for", "signing_key", "new_run_key", "attach", "recover_runs", "recover_interrupted", "runs_of",
           "file_row", "verify_session", "manifest_key"]


# --- the case record, integrity checks and export (server/services/archive/records.py registries) ------------

def _file_json(f: RecordingFile) -> dict:
    return {"id": f.id, "key": f.key, "participant_id": f.participant_id, "name": f.name, "role": f.role,
            "segment": f.segment, "container": f.container, "codecs": f.codecs, "kinds": f.kinds,
            "offset": f.offset, "duration": f.duration, "size": f.size, "sha256": f.sha256,
            "playable": f.playable, "url": f"/api/v1/recordings/{f.id}/file"}


def run_json(run: RecordingRun, files: list[RecordingFile]) -> dict:
    return {"id": run.id, "session_id": run.session_id, "run": run.run_key, "status": run.status,
            "name": run.run_key, "url": f"/staff/sessions/{run.session_id}/player",
            "started_at": run.started_at.isoformat() if run.started_at else None,
            "stopped_at": run.stopped_at.isoformat() if run.stopped_at else None,
            "manifest_sha256": run.manifest_sha256, "files": [_file_json(f) for f in files]}


async def _case_sessions(s: AsyncSession, case_id: int) -> list[int]:
    return list((await s.execute(select(MediationSession.id).where(MediationSession.case_id == case_id)
                                 .order_by(MediationSession.id))).scalars().all())


def register_with_archive() -> None:
    """Recordings in a case's record, checked and exported (called by server/system.py)."""

    async def section(s: AsyncSession, case) -> list[dict]:
        out = []
        for sid in await _case_sessions(s, case.id):
            out += [run_json(run, files) for run, files in await runs_of(s, sid)]
        return out

    async def check(ctx) -> "archive.CheckOutcome":
        out = archive.CheckOutcome("recordings")
        if ctx.settings is None:
            out.note = "no settings: recordings not checked"
            return out
        if ctx.case is not None:
            sessions = await _case_sessions(ctx.s, ctx.case.id)
        else:
            sessions = list((await ctx.s.execute(select(RecordingRun.session_id).distinct())).scalars().all())
        for sid in sessions:
            runs = await runs_of(ctx.s, sid)
            out.checked += sum(1 + len(files) for _, files in runs)
            for problem in await verify_session(ctx.s, ctx.settings, sid):
                out.problems.append(archive.Problem("recordings", f"session {sid}", "recording_mismatch", problem,
                                                    case_id=ctx.case.id if ctx.case else None))
        return out

    async def export(s: AsyncSession, case, settings) -> list:
        if settings is None:
            return []
        store = store_for(settings)
        files = []
        for sid in await _case_sessions(s, case.id):
            for run, rows in await runs_of(s, sid):
                files.append(archive.ExportFile(f"recordings/{run.run_key}/manifest.json", "recording_manifest",
                                                path=store.path(manifest_key(run.run_key))))
                files += [archive.ExportFile(f"recordings/{f.key}", "recording", path=store.path(f.key),
                                             recorded_sha256=f.sha256) for f in rows]
        return files

    archive.register_record_section("recordings", section, [])
    archive.register_checker("recordings", check)
    archive.register_export_files("recordings", export)


TIMELINE = ("participant.joined", "participant.left", "participant.admitted", "participant.moved",
            "participant.removed", "participant.denied", "recording.requested", "recording.consent",
            "recording.refused", "recording.started", "recording.stopped", "recording.interrupted",
            "recording.caucus", "caucus.created", "caucus.closed", "session.ended", "session.interrupted")


async def session_view(s: AsyncSession, who, session_id: int) -> dict:
    """A session's recording runs beside what happened in it (the player and its API)."""
    sess = await get_session(s, session_id)
    case = await view_case(s, who, sess.case_id)
    runs = [run_json(run, files) for run, files in await runs_of(s, sess.id)]
    events = (await s.execute(select(AuditEntry).where(AuditEntry.session_id == sess.id,
                                                       AuditEntry.action.in_(TIMELINE))
                              .order_by(AuditEntry.seq))).scalars().all()
    return {"session": ser.session(sess), "case": {"id": case.id, "number": case.number, "title": case.title},
            "runs": runs, "timeline": [ser.audit_entry(e) for e in events]}
