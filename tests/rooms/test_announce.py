"""Announced media addresses (1:1 NAT): the rewrite of the SDP the server sends, and a
real aiortc client that gets the announced candidate and still receives media."""

from __future__ import annotations

import pytest
from aiortc.sdp import SessionDescription, candidate_from_sdp

from rooms import Room
from rooms.announce import announce, parse_addresses

from .clients import wait_for
from .conftest import Harness

HOST4 = "a=candidate:f957a2332b1715da3b0ef8ba684454eb 1 udp 2130706431 192.0.2.2 58067 typ host"
HOST6 = "a=candidate:d0bcf3d9c29a2bc887618212a1623bfa 1 udp 2130706431 fd00::2 36959 typ host"
SRFLX = "a=candidate:3c1f1c3a 1 udp 1694498815 198.51.100.9 40000 typ srflx raddr 192.0.2.2 rport 58067"
TCP = "a=candidate:77aa 1 tcp 1518280447 192.0.2.2 9 typ host tcptype active"

SECTION = [
    "c=IN IP4 192.0.2.2",
    "a=mid:{mid}",
    "a=rtcp-mux",
    "a=rtpmap:96 opus/48000/2",
    HOST4,
    HOST6,
    SRFLX,
    TCP,
    "a=end-of-candidates",
    "a=ice-ufrag:KovA",
    "a=ice-pwd:7ENJPwGBDZBAO7MA1hSht6",
    "a=fingerprint:sha-256 9A:A1:E6:A2:73:34:FC:46:36:0C:97:7C:32:7B:08:5C:84:DA:8D:CB:3F:27:B2:50:9A:0A:40:68:6A:07:F9:DB",
    "a=setup:actpass",
]


def sample_sdp(newline: str = "\r\n") -> str:
    lines = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1", "a=msid-semantic:WMS *"]
    for mid, kind in (("0", "audio"), ("1", "video")):
        lines.append(f"m={kind} 58067 UDP/TLS/RTP/SAVPF 96")
        lines += [line.format(mid=mid) for line in SECTION]
    return newline.join(lines) + newline


def candidates(sdp: str) -> list[list[str]]:
    return [line[len("a=candidate:"):].split() for line in sdp.splitlines() if line.startswith("a=candidate:")]


def test_each_host_candidate_gets_the_announced_address_of_its_family():
    sdp = sample_sdp()
    out = announce(sdp, ["203.0.113.7", "2001:db8::7"])
    added = [c for c in candidates(out) if c[4] in ("203.0.113.7", "2001:db8::7")]
    # Per m-section: the UDP and TCP IPv4 host candidates and the IPv6 one; srflx untouched.
    assert len(added) == 2 * 3
    by_host = {(h[2], h[5]): h for h in candidates(sdp) if h[7] == "host"}
    for c in added:
        host = by_host[(c[2], c[5])]
        assert c[1] == host[1] and c[2] == host[2] and c[5] == host[5]  # component, protocol, port
        assert c[6:] == host[6:]  # typ host (and tcptype) as they were
        assert c[0] != host[0] and c[0] not in {h[0] for h in candidates(sdp)}  # a foundation of its own
        assert int(host[3]) < int(c[3]) <= int(host[3]) + 1024 < 2**31  # slightly preferred
        # IPv4 for IPv4 host candidates, IPv6 for IPv6 ones.
        assert (":" in c[4]) == (":" in host[4])
        # Aiortc (and so any ICE agent) reads it as a candidate.
        candidate_from_sdp(" ".join(c))
    # Each added line follows its host line; nothing else changed.
    assert [line for line in out.split("\r\n") if "203.0.113.7" not in line and "2001:db8::7" not in line] \
        == sdp.split("\r\n")
    lines = out.split("\r\n")
    assert lines[lines.index(HOST4) + 1].endswith("203.0.113.7 58067 typ host")
    assert out.endswith("\r\n") and "\n" not in out.replace("\r\n", "")
    parsed = SessionDescription.parse(out)
    for media in parsed.media:
        hosts = {(c.ip, c.port) for c in media.ice_candidates}
        assert ("203.0.113.7", 58067) in hosts and ("2001:db8::7", 36959) in hosts


def test_only_the_families_announced_and_never_twice():
    sdp = sample_sdp("\n")
    out = announce(sdp, ["203.0.113.7", " 203.0.113.7", "192.0.2.2"])
    added = [c for c in candidates(out) if c not in candidates(sdp)]
    # 192.0.2.2 is the host address itself: nothing to add. No IPv6 announced: the IPv6
    # host candidate gets nothing. The repeated address is added once.
    assert sorted((c[2], c[4], c[5]) for c in added) == sorted(
        [("udp", "203.0.113.7", "58067"), ("tcp", "203.0.113.7", "9")] * 2)
    assert "\r" not in out
    # Two addresses for one host candidate: distinct foundations and priorities.
    two = candidates(announce(sdp, ["203.0.113.7", "203.0.113.8"]))
    udp = [c for c in two if c[2] == "udp" and c[4].startswith("203.0.113.")][:2]
    assert udp[0][0] != udp[1][0] and udp[0][3] != udp[1][3]


def test_nothing_announced_leaves_the_sdp_alone_and_bad_addresses_are_refused():
    sdp = sample_sdp()
    assert announce(sdp, []) == sdp
    assert announce("v=0\r\ns=-\r\n", ["203.0.113.7"]) == "v=0\r\ns=-\r\n"  # no candidates at all
    for bad in ("example.org", "0.0.0.0", "203.0.113.300", ""):
        with pytest.raises(ValueError):
            parse_addresses([bad])
    with pytest.raises(ValueError):
        Room("r", media_addresses=["not-an-ip"])


async def test_a_real_client_gets_the_announced_candidate_and_media_flows(media):
    harness = Harness(media, media_addresses=["127.0.0.2"])
    try:
        m = await harness.join("mediator", "mediator")
        a = await harness.join("alice")
        await wait_for(
            lambda: m.decoded["video"]["alice"] >= 10 and a.decoded["video"]["mediator"] >= 10
            and m.decoded["audio"]["alice"] >= 10 and a.decoded["audio"]["mediator"] >= 10,
            timeout=10, what="media both ways",
        )
        assert not m.errors and not a.errors
        for client in (m, a):
            for pc, what in ((client.pub, "publish answer"), (client.sub, "subscribe offer")):
                # The server's SDP as the client applied it: every IPv4 host candidate of
                # the server has its announced twin on the same port (IPv6 ones have none).
                media_sections = SessionDescription.parse(pc.remoteDescription.sdp).media
                for section in media_sections:
                    host4 = {(c.protocol, c.port) for c in section.ice_candidates
                             if c.type == "host" and ":" not in c.ip and c.ip != "127.0.0.2"}
                    announced = {(c.protocol, c.port) for c in section.ice_candidates if c.ip == "127.0.0.2"}
                    assert host4 and announced == host4, (what, section.ice_candidates)
                # The client's ICE agent took it as a remote candidate.
                transport = pc.getTransceivers()[0].sender.transport.transport
                assert "127.0.0.2" in {c.ip for c in transport.getRemoteCandidates()}, what
        # The server's own local descriptions stay as aiortc made them.
        publish_pc = harness.room.participants["alice"].publish.pc
        assert "127.0.0.2" not in publish_pc.localDescription.sdp
    finally:
        await harness.close()
