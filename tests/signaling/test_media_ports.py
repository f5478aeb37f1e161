"""MEDIA_PORTS: every UDP socket of the server's media binds inside the configured range, so a
county's firewall can allow exactly that range; a malformed or exhausted range stops the start."""
from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest

from rooms import aiortc_hooks as hooks

from tests.rooms.clients import wait_for
from tests.support.servers import ROOT, clean_env

from .peer import Peer


def _free_range(size: int) -> tuple[int, int]:
    """`size` consecutive UDP ports that are free now."""
    for low in range(42000, 60000, size):
        socks = []
        try:
            for port in range(low, low + size):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("0.0.0.0", port))
            return low, low + size - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


@pytest.fixture(autouse=True)
def _any_port_afterwards():
    yield
    hooks.set_media_ports(None)  # the range is process-wide: later tests bind anywhere again


@pytest.fixture
def settings(settings):
    settings.identity_check = False
    settings.media_ports = _free_range(40)
    return settings


async def test_media_binds_only_inside_the_range(live, media):
    low, high = live.settings.media_ports
    mediator = Peer(live.url, await live.token("mediator"), media)
    party = Peer(live.url, await live.token("party", party_id=live.party_ids[0]), media)
    try:
        assert (await mediator.join())["ok"]
        assert (await party.join())["ok"]
        assert (await mediator.call("lobby.admit", {"participant_id": party.me["id"]}))["ok"]
        ack = await party.publish()
        assert ack["ok"], ack
        ports = [int(m.group(1)) for m in re.finditer(r"a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ host", ack["sdp"])]
        assert ports and all(low <= p <= high for p in ports), (ports, low, high)
        assert (await mediator.publish())["ok"]
        await wait_for(lambda: party.frames_from(mediator.me["id"]) > 5, timeout=20, what="media through the range")
        offers = [o for o in party.events["rtc.offer"]]
        sub_ports = [int(m.group(1)) for o in offers
                     for m in re.finditer(r"a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ host", o["sdp"])]
        assert sub_ports and all(low <= p <= high for p in sub_ports), sub_ports
    finally:
        await party.close()
        await mediator.close()


def _serve(tmp_path, ports: str):
    env = clean_env(MEDIATION_DATA_DIR=str(tmp_path), MEDIA_PORTS=ports)
    return subprocess.run([sys.executable, "-m", "server.cli", "serve", "--port", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("ports", ["40000", "40000-39999", "80-90", "40000-70000", "a-b"])
def test_a_malformed_range_stops_the_start(tmp_path, ports):
    p = _serve(tmp_path, ports)
    assert p.returncode != 0 and "MEDIA_PORTS" in p.stderr, p.stderr


def test_an_exhausted_range_stops_the_start(tmp_path):
    low, high = _free_range(2)
    held = []
    try:
        for port in (low, high):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("0.0.0.0", port))
            held.append(s)
        p = _serve(tmp_path, f"{low}-{high}")
    finally:
        for s in held:
            s.close()
    assert p.returncode == 2, p.stderr
    assert "MEDIA_PORTS" in p.stderr and "in use" in p.stderr, p.stderr
