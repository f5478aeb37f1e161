"""SIPp (Debian's sip-tester) as the caller: it dials in, keys the session number, PIN, consent and
notices as RFC 4733 events from a pcap made here, then streams a 1000 Hz G.711 tone; the mediator,
a real aiortc participant, admits the caller and hears that tone; SIPp hangs up and the caller is gone."""
from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

from tests.phone import pcap
from tests.phone.caller import dominant
from tests.phone.conftest import need, until
from tests.support.servers import free_port

SCENARIO = Path(__file__).with_name("sipp_dial_in.xml")


async def test_sipp_dials_in_and_the_room_hears_its_tone(phone_live, mediator, tmp_path):
    need("sipp")
    invite, _token, number = await phone_live.invite("party", party_id=phone_live.party_ids[0])
    pcap.write(tmp_path / "dial_in.pcap", f"{number}#{invite.pin}#1111", freq=1000.0, seconds=14.0)
    shutil.copy(SCENARIO, tmp_path / SCENARIO.name)
    host, port = phone_live.sip
    log = tmp_path / "sipp.log"
    proc = await asyncio.create_subprocess_exec(
        "sipp", f"{host}:{port}", "-sf", SCENARIO.name, "-m", "1", "-l", "1", "-i", "127.0.0.1",
        "-p", str(free_port()), "-mi", "127.0.0.1", "-mp", str(free_port() & ~1), "-d", "16000",
        "-timeout", "60s", "-trace_err", "-error_file", str(tmp_path / "sipp_errors.log"),
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        await until(lambda: any(x.get("participant_id") for x in mediator.events["lobby.waiting"]), 40,
                    "the SIPp caller in the lobby")
        waiting = mediator.events["lobby.waiting"][-1]
        assert waiting["name"].endswith("☎5678")
        pid = waiting["participant_id"]
        assert (await mediator.call("lobby.admit", {"participant_id": pid}))["ok"]
        await until(lambda: len(mediator.heard_from(pid, 2.0)) >= 16000, 20, "the caller's audio in the room")
        await asyncio.sleep(1.0)
        heard = mediator.heard_from(pid, 1.0)
        assert abs(dominant(heard) - 1000.0) < 20, dominant(heard)
        rc = await asyncio.wait_for(proc.wait(), 40)
        assert rc == 0, (log.read_bytes()[-2000:], (tmp_path / "sipp_errors.log").read_text()
                         if (tmp_path / "sipp_errors.log").exists() else "")
        await until(lambda: not any("☎" in x.get("name", "") for x in (mediator.state or {}).get("participants", [])),
                    10, "the caller gone after SIPp's BYE")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
