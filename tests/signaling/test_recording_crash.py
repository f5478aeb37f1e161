"""SIGKILL a real server mid-recording; the next start finalises and attaches the files and
marks the session interrupted. The files play up to within a few seconds of the kill."""
from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from recordings.probe import decodable_seconds
from tests.support.servers import free_port as _free_port
from tests.rooms.clients import wait_for

from .peer import Peer

ROOT = Path(__file__).resolve().parents[2]


def _serve(data: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(MEDIATION_DATA_DIR=str(data), IDENTITY_CHECK="off")
    return subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--demo", "--port", str(port)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def _wait_up(base: str) -> None:
    import aiohttp
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            try:
                async with http.get(base + "/api/v1/institutions") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("server did not start")


async def _api(http, base, method, path, body=None, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, base + "/api/v1" + path, json=body, headers=headers) as r:
        return await r.json()


async def test_sigkill_mid_recording_is_recovered_on_next_start(tmp_path, media):
    import aiohttp
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _serve(tmp_path, port)
    peers = []
    try:
        await _wait_up(base)
        async with aiohttp.ClientSession() as http:
            intake = (await _api(http, base, "POST", "/auth/login", {"username": "intake", "password": "demo-pass-2026"}))["token"]
            med = (await _api(http, base, "POST", "/auth/login", {"username": "mediator", "password": "demo-pass-2026"}))["token"]
            me = (await _api(http, base, "GET", "/auth/me", token=med))["user"]["id"]
            await _api(http, base, "POST", "/cases/1/accept", {}, intake)
            await _api(http, base, "POST", "/cases/1/assign", {"mediator_id": me}, intake)
            sid = (await _api(http, base, "POST", "/cases/1/sessions", {}, med))["session"]["id"]
            case = await _api(http, base, "GET", "/cases/1", token=med)
            party_id = case["case"]["parties"][0]["id"]
            mtok = (await _api(http, base, "POST", f"/sessions/{sid}/invites", {"role": "mediator"}, med))["token"]
            ptok = (await _api(http, base, "POST", f"/sessions/{sid}/invites",
                               {"role": "party", "party_id": party_id}, med))["token"]
        mediator, party = Peer(base, mtok, media), Peer(base, ptok, media)
        peers += [mediator, party]
        await mediator.join()
        await mediator.publish()
        await party.join()
        await mediator.call("lobby.admit", {"participant_id": party.me["id"]})
        await party.publish()
        await mediator.call("recording.start")
        await wait_for(lambda: party.events["recording.consent_request"], what="consent asked")
        await party.call("recording.consent", {"agree": True})
        await wait_for(lambda: mediator.state and mediator.state["recording"]["active"], what="recording")
        recorded_from = time.monotonic()
        await asyncio.sleep(6)
        proc.send_signal(signal.SIGKILL)
        recorded = time.monotonic() - recorded_from
        proc.wait(10)
    finally:
        for p in peers:
            await p.close()
        if proc.poll() is None:
            proc.kill()
    media_files = sorted(p for p in (tmp_path / "recordings").rglob("*") if p.suffix in (".webm", ".mkv"))
    assert len(media_files) >= 2, media_files
    # Restart: the recording is finalised, signed and attached; the session is marked interrupted.
    proc = _serve(tmp_path, port)
    try:
        await _wait_up(base)
        db = sqlite3.connect(tmp_path / "mediation.db")
        runs = db.execute("select status, run_key from recording_runs").fetchall()
        files = db.execute("select key, duration from recording_files").fetchall()
        status = db.execute("select status from sessions where id=?", (sid,)).fetchone()[0]
        actions = [r[0] for r in db.execute("select action from audit_log where session_id=? order by seq", (sid,))]
    finally:
        proc.terminate()
        proc.wait(10)
    assert [r[0] for r in runs] == ["interrupted"]
    assert status == "interrupted" and "recording.interrupted" in actions and "session.interrupted" in actions
    videos = 0
    for key, _duration in files:
        frames, seconds = decodable_seconds(str(tmp_path / "recordings" / key), "video")
        if frames:  # each participant's file plays for (almost) all of the recorded time
            videos += 1
            # 1.5 s of slack: recording begins at the first keyframe after consent.
            assert seconds >= 0.9 * (recorded - 1.5), (key, seconds, recorded)
    assert videos == 2

    # The command line: verify passes, compose renders one grid video, and an altered file fails verify.
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["MEDIATION_DATA_DIR"] = str(tmp_path)
    cli = [sys.executable, "-m", "server.cli", "recordings"]
    r = subprocess.run(cli + ["verify", str(sid)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stdout + r.stderr
    out = tmp_path / "grid.webm"
    r = subprocess.run(cli + ["compose", str(sid), "--out", str(out)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "100.0%" in r.stderr  # the progress bar reached the end
    frames, seconds = decodable_seconds(str(out), "video")
    assert frames > 0 and seconds >= 0.8 * (recorded - 1.5)
    victim = tmp_path / "recordings" / files[0][0]
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0xFF
    victim.write_bytes(bytes(data))
    r = subprocess.run(cli + ["verify", str(sid)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and files[0][0] in r.stdout
