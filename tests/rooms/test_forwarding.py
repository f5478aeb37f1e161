"""Media really flows between real aiortc peers through the room, encoded bytes
untouched, and the server never decodes or encodes."""

from __future__ import annotations

import threading

from rooms import aiortc_hooks as hooks

from .clients import HEIGHT, WIDTH, wait_for


async def test_two_participants_receive_each_others_media(each_path):
    harness = each_path
    m = await harness.join("mediator", "mediator")
    a = await harness.join("alice")

    await wait_for(
        lambda: m.decoded["video"]["alice"] >= 10 and a.decoded["video"]["mediator"] >= 10,
        what="video decoded on both clients",
    )
    await wait_for(
        lambda: m.decoded["audio"]["alice"] >= 10 and a.decoded["audio"]["mediator"] >= 10,
        what="audio decoded on both clients",
    )
    assert m.video_sizes == a.video_sizes == {(WIDTH, HEIGHT)}
    assert not m.errors and not a.errors


def server_peer_connections(room):
    for participant in room.participants.values():
        for session in (participant.publish, participant.subscribe):
            if session is not None:
                yield session


async def test_server_never_decodes_or_encodes_and_bytes_are_identical(each_path, media):
    harness = each_path
    m = await harness.join("mediator", "mediator")
    a = await harness.join("alice")
    b = await harness.join("bob")
    await wait_for(
        lambda: all(
            c.decoded["video"][other] >= 15
            for c in (m, a, b)
            for other in ("mediator", "alice", "bob")
            if other != c.id
        ),
        what="video everywhere",
    )
    room = harness.room

    # Receive side: every server receiver is tapped, forwarded frames, and has no
    # decoder thread.
    receivers = [t.receiver for p in room.participants.values() for t in p.publish.pc.getTransceivers()]
    assert len(receivers) == 6
    for receiver in receivers:
        tap = hooks.receiver_tap(receiver)
        assert tap is not None and tap.frames > 0
        assert not hooks.receiver_has_decoder_thread(receiver)

    # Send side: every server sender forwards the publisher's packets (the packet path) or only
    # packetizes (the frame path); neither can encode (encode() would raise).
    senders = [t.sender for p in room.participants.values() for t in p.subscribe.pc.getTransceivers()]
    assert len(senders) == 12  # 3 viewers x 2 publishers x (audio + video)
    for sender in senders:
        encoder = hooks.sender_encoder(sender)
        if room.forwarding == "packets":
            assert hooks.sender_packets(sender).packets_out > 0
            assert not isinstance(encoder, hooks.PackOnlyEncoder)
        else:
            assert isinstance(encoder, hooks.PackOnlyEncoder)
            assert encoder.pack_calls > 0

    # No decoder thread in the process belongs to the server: every live one is a
    # client subscriber's.
    client_threads = set().union(*(c.decoder_threads() for c in (m, a, b)))
    live_decoders = {t for t in threading.enumerate() if t.name.endswith("-decoder")}
    assert live_decoders <= client_threads
    assert len(client_threads) == 12

    # What the viewers reassembled is byte for byte what the publishers encoded.
    for client in (m, a, b):
        frames = [data for _, data in client.payloads]
        assert len(frames) >= 30
        assert all(data in media.vp8_set for data in frames)
        # ...and each viewer's first frame from a publisher is that publisher's keyframe.
        first = {}
        for publisher, data in client.payloads:
            first.setdefault(publisher, data)
        assert all(data == media.vp8[0] for data in first.values()), "stream did not start at a keyframe"
