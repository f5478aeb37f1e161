"""Server CPU per forwarded frame: rooms/ (forward encoded frames) vs. aiortc's stock
MediaRelay path (decode once, re-encode per viewer).

The server runs in a child process (its CPU time is what we measure); the publisher
and viewers run in this process as real aiortc peers on loopback. The publisher
replays pre-encoded VP8 + Opus (no client encoding); the viewers count frames with
rooms' receiver hook (no client decoding), so the clients stay cheap and out of the
way on small machines.

    python bench/forwarding.py [--viewers 1,2,4] [--seconds 8] [--size 320x240]
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import av  # noqa: E402
from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402

from rooms import aiortc_hooks as hooks  # noqa: E402
from rooms.peers import make_configuration  # noqa: E402

# ----------------------------------------------------------------------------- server side


async def _server_main(mode: str, conn) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: inbox.put_nowait(conn.recv()))
    send = conn.send

    if mode == "sfu":
        from rooms import Room

        room = Room("bench", on_subscribe_offer=lambda pid, msg: send({"op": "offer", "pid": pid, "sdp": msg["sdp"]}))

        async def join(pid: str, role: str) -> None:
            room.join(pid, pid, "mediator" if role == "publisher" else "party", area="main")

        async def publish(pid: str, sdp: str) -> str:
            return (await room.handle_publish_offer(pid, sdp, "offer"))["sdp"]

        async def answer(pid: str, sdp: str) -> None:
            await room.handle_subscribe_answer(pid, sdp, "answer")

        async def close() -> None:
            await room.close()

    else:
        from aiortc.contrib.media import MediaRelay

        relay = MediaRelay()
        sources: list = []
        pcs: dict[str, RTCPeerConnection] = {}

        async def join(pid: str, role: str) -> None:
            pcs[pid] = RTCPeerConnection(make_configuration([]))
            if role != "publisher":
                for track in sources:
                    pcs[pid].addTransceiver(relay.subscribe(track), direction="sendonly")
                await pcs[pid].setLocalDescription(await pcs[pid].createOffer())
                send({"op": "offer", "pid": pid, "sdp": pcs[pid].localDescription.sdp})

        async def publish(pid: str, sdp: str) -> str:
            pc = pcs[pid]
            pc.on("track", sources.append)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            return pc.localDescription.sdp

        async def answer(pid: str, sdp: str) -> None:
            await pcs[pid].setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

        async def close() -> None:
            for pc in pcs.values():
                await pc.close()

    while True:
        msg = await inbox.get()
        op = msg["op"]
        if op == "join":
            await join(msg["pid"], msg["role"])
        elif op == "publish":
            send({"op": "answer", "pid": msg["pid"], "sdp": await publish(msg["pid"], msg["sdp"])})
        elif op == "answer":
            await answer(msg["pid"], msg["sdp"])
        elif op == "cpu":
            send({"op": "cpu", "cpu": time.process_time()})
        elif op == "quit":
            await close()
            send({"op": "bye"})
            return


def _run_server(mode: str, conn) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(_server_main(mode, conn))


# ----------------------------------------------------------------------------- client side


def _encode_vp8(width: int, height: int, count: int = 60) -> list[bytes]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = fractions.Fraction(1, 30)
    codec.bit_rate = 600_000
    codec.gop_size = 100_000
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    out: list[bytes] = []
    chroma = bytes([128]) * (width * height // 4)
    for i in range(count):
        frame = av.VideoFrame(width, height, "yuv420p")
        # A moving gradient plus some noise: frames of a few RTP packets, like a camera.
        noise = os.urandom(width * height // 8)
        luma = bytearray(bytes(((x * 3 + i * 7) & 0xFF) for x in range(width)) * height)
        for k in range(len(noise)):
            luma[k * 8] ^= noise[k] & 0x3F
        frame.planes[0].update(bytes(luma))
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
        frame.pts = i
        out += [bytes(p) for p in codec.encode(frame)]
    return out


def _encode_opus(count: int = 50) -> list[bytes]:
    import array
    import math

    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.layout, codec.format, codec.bit_rate = 48000, "stereo", "s16", 32000
    codec.time_base = fractions.Fraction(1, 48000)
    out: list[bytes] = []
    for i in range(count):
        samples = array.array("h", (int(8000 * math.sin(2 * math.pi * 440 * (i * 960 + n // 2) / 48000)) for n in range(1920)))
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate, frame.pts, frame.time_base = 48000, i * 960, fractions.Fraction(1, 48000)
        out += [bytes(p) for p in codec.encode(frame)]
    return out


async def _measure(mode: str, viewers: int, seconds: float, size: tuple[int, int], media: dict) -> dict:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "rooms"))
    from tests.rooms.clients import EncodedTrack  # the tests' paced replay track

    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(target=_run_server, args=(mode, child), daemon=True)
    proc.start()
    loop = asyncio.get_running_loop()
    replies: dict[str, asyncio.Queue] = {}
    viewer_pcs: dict[str, RTCPeerConnection] = {}
    taps: list = []

    def q(key: str) -> asyncio.Queue:
        return replies.setdefault(key, asyncio.Queue())

    async def on_offer(pid: str, sdp: str) -> None:
        pc = viewer_pcs[pid]
        if pc.signalingState == "closed":
            return  # the server renegotiates while the bench tears down
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        for t in pc.getTransceivers():
            if hooks.receiver_tap(t.receiver) is None:
                taps.append(hooks.install_receiver_tap(t.receiver, t.kind))  # count, don't decode
        await pc.setLocalDescription(await pc.createAnswer())
        parent.send({"op": "answer", "pid": pid, "sdp": pc.localDescription.sdp})

    def on_message() -> None:
        msg = parent.recv()
        if msg["op"] == "offer":
            asyncio.ensure_future(on_offer(msg["pid"], msg["sdp"]))
        else:
            q(msg["op"]).put_nowait(msg)

    loop.add_reader(parent.fileno(), on_message)

    # publisher
    pub = RTCPeerConnection(make_configuration([]))
    video = EncodedTrack("video", media["vp8"])
    vt = pub.addTransceiver(video, direction="sendonly")
    pub.addTransceiver(EncodedTrack("audio", media["opus"]), direction="sendonly")
    original = vt.sender._handle_rtcp_packet

    async def handle(packet):  # type: ignore[no-untyped-def]
        if getattr(packet, "fmt", None) in (1, 4) and hasattr(packet, "media_ssrc"):
            video.request_keyframe()
        await original(packet)

    vt.sender._handle_rtcp_packet = handle
    parent.send({"op": "join", "pid": "pub", "role": "publisher"})
    await pub.setLocalDescription(await pub.createOffer())
    parent.send({"op": "publish", "pid": "pub", "sdp": pub.localDescription.sdp})
    answer = await q("answer").get()
    await pub.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    for i in range(viewers):
        pid = f"v{i}"
        viewer_pcs[pid] = RTCPeerConnection(make_configuration([]))
        parent.send({"op": "join", "pid": pid, "role": "viewer"})

    await asyncio.sleep(3.0)  # connect, first keyframes, encoder warm-up (relay mode)

    async def cpu() -> float:
        parent.send({"op": "cpu"})
        return (await q("cpu").get())["cpu"]

    def counts() -> tuple[int, int, int]:
        video_frames = sum(t.frames for t in taps if t.kind == "video")
        frames = sum(t.frames for t in taps)
        packets = sum(t.packets for t in taps)
        return frames, video_frames, packets

    cpu0, c0, t0 = await cpu(), counts(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, c1, t1 = await cpu(), counts(), time.monotonic()
    for pc in viewer_pcs.values():
        await pc.close()
    parent.send({"op": "quit"})
    await q("bye").get()
    loop.remove_reader(parent.fileno())
    proc.join(5)
    await pub.close()

    used = cpu1 - cpu0
    frames, video_frames, packets = (c1[i] - c0[i] for i in range(3))
    return {
        "mode": mode,
        "viewers": viewers,
        "cpu_percent": 100 * used / (t1 - t0),
        "frames_per_s": frames / (t1 - t0),
        "us_per_frame": 1e6 * used / frames if frames else float("nan"),
        "us_per_packet": 1e6 * used / packets if packets else float("nan"),
        "video_fps_per_viewer": video_frames / (t1 - t0) / viewers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", default="1,2,4")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--modes", default="sfu,relay")
    args = parser.parse_args()
    width, height = (int(x) for x in args.size.split("x"))
    media = {"vp8": _encode_vp8(width, height), "opus": _encode_opus()}
    rows = []
    for mode in args.modes.split(","):
        for viewers in (int(v) for v in args.viewers.split(",")):
            rows.append(asyncio.run(_measure(mode, viewers, args.seconds, (width, height), media)))
            r = rows[-1]
            print(
                f"{r['mode']:>5} viewers={r['viewers']:<2} server CPU {r['cpu_percent']:6.1f}% "
                f"{r['frames_per_s']:7.1f} frames/s forwarded  {r['us_per_frame']:7.1f} us/frame  "
                f"{r['us_per_packet']:6.1f} us/packet  video {r['video_fps_per_viewer']:4.1f} fps/viewer",
                flush=True,
            )
    # Marginal cost: extra server CPU per extra forwarded frame between consecutive
    # viewer counts of one path (removes the fixed cost of receiving the publisher).
    for prev, r in zip(rows, rows[1:]):
        if prev["mode"] == r["mode"] and r["frames_per_s"] > prev["frames_per_s"]:
            r["marginal"] = 1e4 * (r["cpu_percent"] - prev["cpu_percent"]) / (r["frames_per_s"] - prev["frames_per_s"])
    print()
    print("| path | viewers | server CPU (% of a core) | frames/s out | µs CPU / forwarded frame (all-in) "
          "| µs CPU / forwarded packet (all-in) | marginal µs / extra forwarded frame | video fps per viewer |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        name = "rooms/ (forward encoded)" if r["mode"] == "sfu" else "MediaRelay (decode + re-encode)"
        marginal = f"{r['marginal']:.0f}" if "marginal" in r else "–"
        print(
            f"| {name} | {r['viewers']} | {r['cpu_percent']:.1f} | {r['frames_per_s']:.0f} | "
            f"{r['us_per_frame']:.0f} | {r['us_per_packet']:.0f} | {marginal} | {r['video_fps_per_viewer']:.1f} |"
        )


if __name__ == "__main__":
    main()
