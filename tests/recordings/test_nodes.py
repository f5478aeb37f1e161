"""Recordings and node death: each run records the node that writes it; a node starting
recovers only its own runs (and old ones without an owner), live sessions are left to the
other nodes when there is Redis; `mediation recordings recover --node` finalises a dead
node's runs. Real crashed recordings (a SIGKILLed recorder process), real databases."""

from __future__ import annotations

import dataclasses
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select as sql_select

from recordings import DirectoryStore, RecordingError, SessionRecorder, read_owner, verify_recording
from recordings.manifest import owner_key
from server.core.models import AuditEntry, Case, MediationSession, RecordingRun
from server.core.schemas import InstitutionIn, UserIn
from server.services import directory
from server.services import recordings as rec_svc

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("crash_child.py")
CRASHED = "s1-20260101T000000"


@pytest.fixture(scope="module")
def crashed(tmp_path_factory) -> Path:
    """What a recorder of node "node-x" left when it was SIGKILLed (~1.5 s of media)."""
    root = tmp_path_factory.mktemp("crashed")
    log_path = root.parent / "crash-child.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(CHILD), str(root), CRASHED, "node-x"], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, "child never started recording: " + log_path.read_text()
            json.loads(proc.stdout.readline())
            time.sleep(1.5)
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return root / CRASHED


def test_the_recorder_claims_its_run_for_its_node_before_any_media(crashed, tmp_path):
    store = DirectoryStore(crashed.parent)
    # The dead recorder's run names its node; the owner record is no media file.
    assert read_owner(store, CRASHED) == "node-x"
    assert store.list(CRASHED) == [f"{CRASHED}/alice-1.webm", owner_key(CRASHED)]
    assert os.path.getmtime(store.path(owner_key(CRASHED))) <= os.path.getmtime(store.path(f"{CRASHED}/alice-1.webm"))
    # A run key is claimed once: a second recorder on it is refused, and the service
    # picks another key.
    fresh = DirectoryStore(tmp_path / "rec")
    SessionRecorder(fresh, "s5-20260101T000000", node_id="node-a")
    assert read_owner(fresh, "s5-20260101T000000") == "node-a"
    with pytest.raises(RecordingError):
        SessionRecorder(fresh, "s5-20260101T000000", node_id="node-b")
    assert read_owner(fresh, "s5-20260101T000000") == "node-a"
    assert fresh.list("s5-20260101T000000")  # the claim alone makes the key taken for new_run_key
    # Without node_id nothing is written (the recorder stays usable on its own).
    SessionRecorder(fresh, "s6-20260101T000000")
    assert read_owner(fresh, "s6-20260101T000000") is None and fresh.list("s6-20260101T000000") == []


async def _live_session(db) -> int:
    async with db.session() as s:
        inst = await directory.add_institution(s, None, InstitutionIn(name="海港镇人民调解委员会", prefix="HG"))
        user = await directory.add_user(s, None, UserIn(username="med", password="long-enough-pw", role="mediator",
                                                        institution_id=inst.id, name="调解员"))
        case = Case(number="HG-2026-000001", type="mediation", category="labour", title="t", description="d",
                    status="in_mediation", institution_id=inst.id, mediator_id=user.id, access_code_hash="x")
        s.add(case)
        await s.flush()
        sess = MediationSession(case_id=case.id, room_id="room-nodes", status="live", created_by=user.id)
        s.add(sess)
        await s.flush()
        return sess.id


def _place(crashed: Path, settings, run_key: str, owner: str | None) -> Path:
    """A copy of the crashed run as `run_key`, owned by `owner` (None: no owner record)."""
    target = settings.recordings_dir / run_key
    shutil.copytree(crashed, target)
    (target / "node").unlink()
    if owner is not None:
        (target / "node").write_text(owner + "\n")
    return target


def _snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir())}


async def _state(db, sid: int) -> tuple[dict[str, str], str, list[str]]:
    async with db.read() as s:
        runs = {r.run_key: r.status for r in (await s.execute(sql_select(RecordingRun))).scalars()}
        status = (await s.get(MediationSession, sid)).status
        actions = list((await s.execute(sql_select(AuditEntry.action).where(AuditEntry.session_id == sid)
                                        .order_by(AuditEntry.seq))).scalars())
    return runs, status, actions


def _cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "NODE_ID", "RECORDINGS_DIR")}
    env.update(DATABASE_URL=settings.database_url, MEDIATION_DATA_DIR=str(settings.data_dir),
               RECORDINGS_DIR=str(settings.recordings_dir), NODE_ID="node-a")
    return subprocess.run([sys.executable, "-m", "server.cli", "recordings", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


async def test_with_redis_a_node_recovers_its_own_runs_only_and_the_cli_recovers_a_dead_nodes(crashed, settings, db):
    settings = dataclasses.replace(settings, redis_url="redis://127.0.0.1:6379/0", node_id="node-a")
    sid = await _live_session(db)
    settings.recordings_dir.mkdir(parents=True)
    own = f"s{sid}-20260101T000001"
    old = f"s{sid}-20260101T000002"
    dead = f"s{sid}-20260101T000003"
    third = f"s{sid}-20260101T000004"
    _place(crashed, settings, own, "node-a")
    _place(crashed, settings, old, None)
    dead_dir = _place(crashed, settings, dead, "node-b")
    third_dir = _place(crashed, settings, third, "node-c")
    untouched = {dead: _snapshot(dead_dir), third: _snapshot(third_dir)}

    found = await rec_svc.recover_interrupted(db, settings)

    # Its own run and the old ownerless one (claimed first); the other nodes' runs are not
    # touched at all (no remux, no manifest): they may still be writing them.
    assert sorted(found) == [own, old]
    assert read_owner(rec_svc.store_for(settings), old) == "node-a"
    assert {dead: _snapshot(dead_dir), third: _snapshot(third_dir)} == untouched
    runs, status, actions = await _state(db, sid)
    assert runs == {own: "interrupted", old: "interrupted"}
    # The session goes on on another node: not marked interrupted.
    assert status == "live" and "session.interrupted" not in actions
    # A second start finds nothing more to do.
    assert await rec_svc.recover_interrupted(db, settings) == []

    # node-b is down: the operator recovers its runs, as a real process.
    r = _cli(settings, "recover", "--node", "node-b")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == [f"recovered {dead}: session {sid}, 1 file(s), interrupted"]
    runs, status, _ = await _state(db, sid)
    assert runs == {own: "interrupted", old: "interrupted", dead: "interrupted"} and status == "live"
    assert _snapshot(third_dir) == untouched[third]
    assert (dead_dir / "manifest.json").exists()
    assert verify_recording(rec_svc.store_for(settings), dead, rec_svc.signing_key(settings).public_key()) == []
    # Again: nothing to do. By default the command means this node (NODE_ID), whose runs are done.
    r = _cli(settings, "recover", "--node", "node-b")
    assert r.returncode == 0 and r.stdout.strip() == "nothing to do: no unfinished recordings of node node-b", r.stdout
    r = _cli(settings, "recover")
    assert r.returncode == 0 and "nothing to do" in r.stdout and "node-a" in r.stdout, r.stdout + r.stderr
    # --all: every node's.
    r = _cli(settings, "recover", "--all")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == [f"recovered {third}: session {sid}, 1 file(s), interrupted (node node-c)"]
    # Everything attached verifies against the signed manifests and the files.
    r = _cli(settings, "verify", str(sid))
    assert r.returncode == 0 and r.stdout.startswith("ok: 4 run(s), 4 file(s)"), r.stdout + r.stderr


async def test_without_redis_one_node_recovers_every_run_and_interrupts_live_sessions(crashed, settings, db):
    # One node (no REDIS_URL): its id may have changed since the run was written (a new
    # container host name), and nobody else carries the session on.
    settings = dataclasses.replace(settings, redis_url=None, node_id="node-a")
    sid = await _live_session(db)
    settings.recordings_dir.mkdir(parents=True)
    _place(crashed, settings, f"s{sid}-20260101T000001", "node-old-name")
    _place(crashed, settings, f"s{sid}-20260101T000002", None)

    found = await rec_svc.recover_interrupted(db, settings)

    assert sorted(found) == [f"s{sid}-20260101T000001", f"s{sid}-20260101T000002"]
    runs, status, actions = await _state(db, sid)
    assert set(runs.values()) == {"interrupted"} and len(runs) == 2
    assert status == "interrupted" and actions.count("session.interrupted") == 1
    assert actions.count("recording.interrupted") == 2


def test_recover_refuses_bad_input(tmp_path):
    env = {**os.environ, "MEDIATION_DATA_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    cli = [sys.executable, "-m", "server.cli", "recordings", "recover"]
    for args in (["--node", "node-b", "--all"], ["--node", " "], ["--node"]):
        r = subprocess.run(cli + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and r.stderr, (args, r.stdout, r.stderr)
    r = subprocess.run(cli + ["--help"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "only for a node that is down" in " ".join(r.stdout.split())
