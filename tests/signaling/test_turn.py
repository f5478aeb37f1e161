"""TURN relay with a real coturn: a participant who may use only the relay (as a browser behind a
firewall that blocks the server's ports) joins and exchanges audio and video with the others,
over UDP and over TCP; the credentials in the join ack are coturn's use-auth-secret scheme,
expire with the link and open nothing else; a malformed TURN_URLS stops the start."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import subprocess
import sys
import time

import aioice.turn
import pytest

from tests.conftest import IN_CI
from tests.rooms.clients import wait_for
from tests.support.coturn import TURNSERVER, Coturn
from tests.support.servers import ROOT, clean_env

from .peer import Peer

SECRET = "turn-test-secret-" + "s" * 24


@pytest.fixture
def coturn(tmp_path):
    if not os.path.exists(TURNSERVER):
        if IN_CI:
            pytest.fail("coturn is not installed (./run.sh test installs Debian's coturn)")
        pytest.skip("coturn is not installed")
    server = Coturn(tmp_path / "coturn", SECRET).start()
    yield server
    server.stop()


def _relay_only_local_candidates(pc) -> set[str]:
    kinds = set()
    for t in pc.getTransceivers():
        ice = t.sender.transport.transport if t.sender.transport else None
        if ice is not None:
            kinds |= {c.type for c in ice.iceGatherer.getLocalCandidates()}
    return kinds


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_relay_only_party_exchanges_media_through_coturn(live, media, coturn, transport):
    live.settings.turn_urls = [u for u in coturn.urls if u.endswith(f"transport={transport}")]
    live.settings.turn_secret = SECRET
    mediator = Peer(live.url, await live.token("mediator"), media)
    party = Peer(live.url, await live.token("party", party_id=live.party_ids[0]), media, relay_only=True)
    try:
        assert (await mediator.join())["ok"]
        ack = await party.join()
        assert ack["ok"], ack
        turn = [x for x in ack["ice_servers"] if x.get("username")]
        assert len(turn) == 1 and turn[0]["urls"] == live.settings.turn_urls
        assert (await mediator.call("lobby.admit", {"participant_id": party.me["id"]}))["ok"]
        assert (await mediator.publish())["ok"]
        assert (await party.publish())["ok"]
        await wait_for(lambda: party.frames_from(mediator.me["id"]) > 10, timeout=30, what="party decodes mediator")
        await wait_for(lambda: mediator.frames_from(party.me["id"]) > 10, timeout=30, what="mediator decodes party")
        await wait_for(lambda: mediator.frames_from(party.me["id"], "audio") > 10, timeout=30, what="party's audio")
        # Everything the party sent and received went through the relay.
        assert _relay_only_local_candidates(party.pub) == {"relay"}
        assert _relay_only_local_candidates(party.sub) == {"relay"}
        # The server itself never asked the relay for an allocation: only the party's two connections did.
        assert f"{ack['participant']['id']}" in coturn.log()
    finally:
        await party.close()
        await mediator.close()


async def test_turn_credentials_expire_with_the_link_and_name_the_participant(live, coturn):
    live.settings.turn_urls = coturn.urls
    live.settings.turn_secret = SECRET
    party = Peer(live.url, await live.token("party", party_id=live.party_ids[0], expires_in=600))
    try:
        ack = await party.join()
        assert ack["ok"], ack
        turn = next(x for x in ack["ice_servers"] if x.get("username"))
        expiry, who = turn["username"].split(":", 1)
        assert who == ack["participant"]["id"]
        assert abs(int(expiry) - (time.time() + 600)) < 30  # the link's own expiry
        expected = base64.b64encode(hmac.new(SECRET.encode(), turn["username"].encode(), hashlib.sha1).digest())
        assert turn["credential"] == expected.decode()
    finally:
        await party.close()

    async def allocate(username: str, password: str):
        transport, _ = await aioice.turn.create_turn_endpoint(asyncio.DatagramProtocol, ("127.0.0.1", coturn.port),
                                                              username=username, password=password)
        transport.close()

    await allocate(turn["username"], turn["credential"])  # valid: coturn grants a relay
    # The same participant with an expiry in the past, signed correctly: refused.
    old = f"{int(time.time()) - 60}:{who}"
    old_cred = base64.b64encode(hmac.new(SECRET.encode(), old.encode(), hashlib.sha1).digest()).decode()
    with pytest.raises(Exception):
        await asyncio.wait_for(allocate(old, old_cred), 10)
    # A username changed without the secret: refused.
    with pytest.raises(Exception):
        await asyncio.wait_for(allocate(f"{int(time.time()) + 86400 * 365}:{who}", turn["credential"]), 10)


@pytest.mark.parametrize("urls,secret,says", [
    ("turn:relay.example.org:3478?transport=sctp", SECRET, "not a TURN URL"),
    ("stun:relay.example.org:3478", SECRET, "not a TURN URL"),
    ("turn:relay.example.org:99999", SECRET, "bad port"),
    ("turns:relay.example.org:443?transport=udp", SECRET, "TLS"),
    ("turn:relay.example.org:3478", "", "needs TURN_SECRET"),
    ("", SECRET, "TURN_URLS is empty"),
])
def test_a_bad_turn_configuration_stops_the_start(tmp_path, urls, secret, says):
    env = clean_env(MEDIATION_DATA_DIR=str(tmp_path), TURN_URLS=urls, TURN_SECRET=secret)
    p = subprocess.run([sys.executable, "-m", "server.cli", "serve", "--port", "1"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "TURN_URLS / TURN_SECRET" in p.stderr and says in p.stderr, p.stderr
