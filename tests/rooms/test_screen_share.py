"""Screen sharing (docs/protocol.md, "Screen sharing") with real aiortc peers: a re-offer adds a
video m-line named "screen", which becomes a producer forwarded to the sharer's area only; the
mediator (or the sharer) stops it on the server; bad offers are refused and change nothing."""

from __future__ import annotations

import time

import pytest
from aiortc import RTCSessionDescription

from rooms.errors import RoomError

from .clients import EncodedTrack, wait_for
from .conftest import Harness


@pytest.fixture
async def shares(media):
    events: list[tuple] = []
    h = Harness(media, on_share=lambda producer, started, reason, by: events.append(
        (producer.participant_id, started, reason, by)))
    h.events = events
    yield h
    await h.close()


async def offer(client, tracks=None, sdp=None, screen=None):
    """The client's publish re-offer with `tracks` (or naming `screen`'s m-line, whose mid is
    known once the offer is made); the answer is applied when accepted."""
    if sdp is None:
        await client.pub.setLocalDescription(await client.pub.createOffer())
        sdp = client.pub.localDescription.sdp
    if screen is not None:
        tracks = {screen.mid: "screen"}
    answer = await client.room.handle_publish_offer(client.id, sdp, "offer", tracks)
    await client.pub.setRemoteDescription(RTCSessionDescription(**answer))


def add_screen(client):
    track = EncodedTrack("video", client.media.vp8)
    transceiver = client.pub.addTransceiver(track, direction="sendonly")
    client._watch_rtcp(transceiver.sender, track)  # a real encoder answers keyframe requests
    return transceiver


def screen_of(room, pid):
    return next((p for p in room.participant(pid).producers.values() if p.role == "screen" and not p.closed), None)


def rows(client, producer_id):
    return [r for r in client.tracks.values() if r["producer_id"] == producer_id and r["active"]]


async def test_a_share_reaches_its_area_only_and_the_mediator_stops_it(shares):
    room = shares.room
    m = await shares.join("mediator", "mediator")
    a = await shares.join("alice")
    carol = await shares.join("carol", publish=False)
    caucus = room.create_caucus("Bob alone")
    b = await shares.join("bob", area=caucus)
    await wait_for(lambda: m.decoded["video"]["alice"] >= 3, what="alice's camera at the mediator")

    screen_tr = add_screen(a)
    await offer(a)  # the m-line exists but names no role yet: it must not start a share...
    # ...it became a second camera (no small encoding here), so naming it now changes its role:
    mid = screen_tr.mid
    with pytest.raises(RoomError) as err:
        await offer(a, {mid: "screen"}, sdp=a.pub.localDescription.sdp)
    assert err.value.code == "bad_request"
    assert screen_of(room, "alice") is None

    # A fresh client names the m-line "screen" in the re-offer that adds it.
    await a.close()
    await room.remove("alice")
    a = await shares.join("alice")
    screen_tr = add_screen(a)
    await a.pub.setLocalDescription(await a.pub.createOffer())
    sdp = a.pub.localDescription.sdp
    mids = {t.kind: t.mid for t in a.pub.getTransceivers() if t is not screen_tr}
    before = sorted(room.participant("alice").producers)
    # Bad input is refused with a clear error and changes nothing.
    for tracks in ({mids["audio"]: "screen"},                      # an audio m-line
                   {screen_tr.mid: "screen", mids["video"]: "screen"},  # two screens
                   {mids["video"]: "screen"}):                     # the camera cannot become one
        with pytest.raises(RoomError) as err:
            await room.handle_publish_offer("alice", sdp, "offer", tracks)
        assert err.value.code == "bad_request", tracks
        assert sorted(room.participant("alice").producers) == before
    await offer(a, {screen_tr.mid: "screen"}, sdp=sdp)
    share = screen_of(room, "alice")
    assert share is not None and share.kind == "video" and share.mid == screen_tr.mid
    assert shares.events[-1] == ("alice", True, None, None)
    assert {p["role"] for p in room.participant("alice").info()["producers"]} == {"camera", "screen"}

    # The viewers in the main room get it, labelled as a share; the caucus does not.
    await wait_for(lambda: rows(m, share.id) and m.decoded_by_mid[rows(m, share.id)[0]["mid"]] >= 5,
                   timeout=10, what="the share decoded at the mediator")
    assert rows(m, share.id)[0]["role"] == "screen" and rows(m, share.id)[0]["participant_id"] == "alice"
    assert {r["role"] for r in m.tracks.values() if r["active"] and r["participant_id"] == "alice"} == {"camera", "screen"}
    await wait_for(lambda: rows(carol, share.id), what="the share at carol")
    assert not rows(b, share.id)
    assert share.id not in {c.producer.id for c in room.participant("bob").subscribe.consumers.values()}

    # Muting the camera does not pause the share.
    room.mute("alice", "video", True)
    assert not share.paused
    room.mute("alice", "video", False)

    # One share per area: the mediator's second share is refused, nothing changes.
    m_before = sorted(room.participant("mediator").producers)
    m_screen = add_screen(m)
    await m.pub.setLocalDescription(await m.pub.createOffer())
    with pytest.raises(RoomError) as err:
        await room.handle_publish_offer("mediator", m.pub.localDescription.sdp, "offer", {m_screen.mid: "screen"})
    assert err.value.code == "bad_state" and "Alice" in err.value.message
    assert sorted(room.participant("mediator").producers) == m_before
    # In the caucus, bob may share at the same time (another area).
    b_screen = add_screen(b)
    await offer(b, screen=b_screen)
    assert screen_of(room, "bob") is not None

    # A party cannot stop another's share.
    with pytest.raises(RoomError) as err:
        room.stop_share("alice", by="carol")
    assert err.value.code == "forbidden"
    assert not share.closed
    with pytest.raises(RoomError) as err:
        room.stop_share("carol", by="mediator")
    assert err.value.code == "bad_state"

    # The mediator stops it: the producer closes, the viewers' m-line goes inactive.
    room.stop_share("alice", by="mediator")
    assert share.closed and screen_of(room, "alice") is None
    assert shares.events[-1] == ("alice", False, "stopped_by", "mediator")
    await wait_for(lambda: not rows(m, share.id) and not rows(carol, share.id), what="the share's tiles gone")
    # A re-offer racing the stop (the page has not stopped its capture yet) does not restart it.
    await offer(a, screen=screen_tr)
    assert screen_of(room, "alice") is None
    # The page turns the m-line inactive, then shares again on it.
    screen_tr.direction = "inactive"
    await offer(a)
    assert screen_of(room, "alice") is None
    screen_tr.direction = "sendonly"
    await offer(a, screen=screen_tr)
    again = screen_of(room, "alice")
    assert again is not None and again.id != share.id
    await wait_for(lambda: rows(m, again.id) and m.decoded_by_mid[rows(m, again.id)[0]["mid"]] >= 3,
                   timeout=10, what="the second share decoded")

    # The sharer stops it itself: a re-offer with the m-line inactive.
    screen_tr.direction = "inactive"
    await offer(a)
    assert again.closed and shares.events[-1] == ("alice", False, "stopped", None)
    await wait_for(lambda: not rows(m, again.id), what="the stopped share's tile gone")
    # The camera went on all along.
    seen = m.decoded["video"]["alice"]
    await wait_for(lambda: m.decoded["video"]["alice"] > seen + 5, what="alice's camera still flowing")


async def test_moving_the_sharer_ends_the_share(shares):
    room = shares.room
    m = await shares.join("mediator", "mediator")
    a = await shares.join("alice")
    caucus = room.create_caucus("Alice alone")
    b = await shares.join("bob", area=caucus)
    screen_tr = add_screen(a)
    await offer(a, screen=screen_tr)
    share = screen_of(room, "alice")
    await wait_for(lambda: rows(m, share.id), what="the share at the mediator")
    room.move("alice", caucus, by="mediator")
    assert share.closed and shares.events[-1] == ("alice", False, "moved", None)
    await wait_for(lambda: not rows(m, share.id), what="the share gone at the mediator")
    assert not rows(b, share.id)
    # Leaving ends a share too.
    room.move("alice", "main", by="mediator")
    screen_tr.direction = "inactive"
    await offer(a)
    screen_tr.direction = "sendonly"
    await offer(a, screen=screen_tr)
    assert screen_of(room, "alice") is not None
    await room.remove("alice")
    assert shares.events[-1] == ("alice", False, "left", None)


async def test_a_renewed_connection_carries_the_share_on(shares):
    """docs/protocol.md, "Coming back": the camera and the share, both VP8 video, are each carried
    on by the m-line of their own role (a camera never takes over the parked share, nor back)."""
    from .clients import Client

    room = shares.room
    m = await shares.join("mediator", "mediator")
    a = await shares.join("alice")
    screen_tr = add_screen(a)
    await offer(a, screen=screen_tr)
    before = {p.role: p for p in room.participant("alice").producers.values() if p.kind == "video"}
    await wait_for(lambda: rows(m, before["screen"].id), what="the share at the mediator")
    offers = m.offers
    await a.close()
    back = Client(room, "alice", shares.media)
    shares.clients["alice"] = back
    await room.renew("alice")
    await back.publish()
    screen_tr = add_screen(back)
    await offer(back, screen=screen_tr)
    after = {p.role: p for p in room.participant("alice").producers.values() if p.kind == "video"}
    assert after == before and after["screen"].mid == screen_tr.mid and after["camera"].mid != screen_tr.mid
    decoded = m.decoded_by_mid[rows(m, before["screen"].id)[0]["mid"]]
    await wait_for(lambda: m.decoded_by_mid[rows(m, before["screen"].id)[0]["mid"]] > decoded + 5,
                   timeout=10, what="the share decoded again after the renewal")
    assert m.offers == offers  # the viewer was not renegotiated
    assert [e for e in shares.events if not e[1]] == []  # the share never ended


async def test_a_narrow_viewer_keeps_the_share_before_the_cameras(shares):
    """rooms/adaptation.py: a share comes before every camera, the mediator's included."""
    from rooms.adaptation import AUDIO_RESERVE

    room = shares.room
    m = await shares.join("mediator", "mediator")
    a = await shares.join("alice")
    bob = await shares.join("bob", publish=False)
    screen_tr = add_screen(a)
    await offer(a, screen=screen_tr)
    share = screen_of(room, "alice")
    cameras = [p for q in ("mediator", "alice") for p in room.participant(q).producers.values()
               if p.kind == "video" and p.role == "camera"]
    await wait_for(lambda: rows(bob, share.id) and all(bob.decoded["video"][q] >= 10 for q in ("mediator", "alice")),
                   timeout=10, what="bob decodes every video")
    rate = room.adaptation.rate_of
    await wait_for(lambda: rate(share) > 0 and all(rate(c) > 0 for c in cameras), what="the rates measured")
    audio = sum(rate(p) for q in ("mediator", "alice") for p in room.participant(q).producers.values() if p.kind == "audio")
    # Room for one video only: the share, not the mediator's camera that would come first otherwise.
    link = room.adaptation.link("bob")
    link.estimate = AUDIO_RESERVE * audio + 1.3 * max([rate(share)] + [rate(c) for c in cameras])
    link._cut_at, link._wait = time.monotonic(), 600.0  # just cut: nothing goes up yet
    # From everything paused (what a link cut to this gives), so no level is kept by the slack.
    link.levels = {p.id: "paused" for p in [share, *cameras]}
    # What fits is the share alone: it, and no camera, waits to go up...
    await wait_for(lambda: link._pending.get(share.id, 0) >= 2, what="the share waiting to go up")
    assert all(link.levels.get(c.id) == "paused" for c in cameras)
    # ...and goes up as soon as the wait after the cut is over, the cameras still paused.
    link._wait = 0.0
    await wait_for(lambda: link.levels.get(share.id) == "full", timeout=3, what="the share back in full")
    assert all(link.levels.get(c.id) == "paused" for c in cameras), link.levels
    await wait_for(lambda: bob.decoded_by_mid[rows(bob, share.id)[0]["mid"]] > 0, what="bob decodes the share")
