"""Server CPU per forwarded packet and added latency: rooms/ forwarding each RTP packet (the
packet path, the default), rooms/ forwarding encoded frames (the frame path, FORWARDING=frames)
and aiortc's stock MediaRelay path (decode once, re-encode per viewer).

The server runs in a child process (its CPU time is what we measure); the publisher
and viewers run in this process as real aiortc peers on loopback. The publisher
replays pre-encoded VP8 + Opus (no client encoding); the viewers count frames with
rooms' receiver hook (no client decoding), so the clients stay cheap and out of the
way on small machines.

    python bench/forwarding.py [--viewers 1,2,4] [--seconds 8] [--size 320x240]
                               [--modes packets,frames,relay] [--repeats 1]

Latency: the publisher's packets are timed as they leave its transport and again as each
viewer's transport hands them over (same process, same clock), matched by their payload's last
bytes (identical on every path that does not re-encode); "added latency" is the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import fractions
import multiprocessing
import os
import sys
import time
from typing import Optional

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

    if mode in ("packets", "frames"):
        from rooms import Room

        room = Room("bench", forwarding=mode,
                    on_subscribe_offer=lambda pid, msg: send({"op": "offer", "pid": pid, "sdp": msg["sdp"]}))

        async def join(pid: str, role: str) -> None:
            mediator = role == "publisher" or (role == "both" and not room.participants)
            room.join(pid, pid, "mediator" if mediator else "party", area="main")

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
    profile = os.environ.get("BENCH_PROFILE")  # a file: the server's cProfile statistics go there
    if not profile:
        asyncio.run(_server_main(mode, conn))
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.runcall(asyncio.run, _server_main(mode, conn))
    profiler.dump_stats(f"{profile}.{mode}")


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


def _encode_opus(count: int = 50, tone: float = 440.0) -> list[bytes]:
    import array
    import math

    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.layout, codec.format, codec.bit_rate = 48000, "stereo", "s16", 32000
    codec.time_base = fractions.Fraction(1, 48000)
    out: list[bytes] = []
    for i in range(count):
        samples = array.array("h", (int(8000 * math.sin(2 * math.pi * tone * (i * 960 + n // 2) / 48000)) for n in range(1920)))
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate, frame.pts, frame.time_base = 48000, i * 960, fractions.Fraction(1, 48000)
        out += [bytes(p) for p in codec.encode(frame)]
    return out


class _ChildServer:
    """A rooms/ or MediaRelay server in a child process (its CPU time is what is measured)."""

    def __init__(self, mode: str, on_offer) -> None:  # type: ignore[no-untyped-def]
        self.mode = mode
        self.on_offer = on_offer
        self.replies: dict[str, asyncio.Queue] = {}

    def _q(self, key: str) -> asyncio.Queue:
        return self.replies.setdefault(key, asyncio.Queue())

    async def start(self) -> None:
        self.conn, child = multiprocessing.Pipe()
        self.proc = multiprocessing.get_context("spawn").Process(target=_run_server, args=(self.mode, child), daemon=True)
        self.proc.start()
        asyncio.get_running_loop().add_reader(self.conn.fileno(), self._on_message)

    def _on_message(self) -> None:
        msg = self.conn.recv()
        if msg["op"] == "offer":
            asyncio.ensure_future(self.on_offer(msg["pid"], msg["sdp"]))
        else:
            self._q(msg["op"]).put_nowait(msg)

    async def join(self, pid: str, role: str) -> None:
        self.conn.send({"op": "join", "pid": pid, "role": role})

    async def publish(self, pid: str, sdp: str) -> str:
        self.conn.send({"op": "publish", "pid": pid, "sdp": sdp})
        return (await self._q("answer").get())["sdp"]

    async def answer(self, pid: str, sdp: str) -> None:
        self.conn.send({"op": "answer", "pid": pid, "sdp": sdp})

    async def subscribe(self, pid: str) -> None:
        pass  # the room offers what the participant may see by itself

    async def cpu(self) -> float:
        self.conn.send({"op": "cpu"})
        return (await self._q("cpu").get())["cpu"]

    async def close(self) -> None:
        self.conn.send({"op": "quit"})
        await self._q("bye").get()
        asyncio.get_running_loop().remove_reader(self.conn.fileno())
        self.proc.join(5)


async def _measure(mode: str, viewers: int, seconds: float, size: tuple[int, int], media: list,
                   loopback: bool = False, room: int = 0) -> dict:
    """One run: one publisher and `viewers` viewers, or (`room` > 0) a room of `room` people who
    all publish and each see everyone else."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "rooms"))
    from tests.rooms.clients import EncodedTrack  # the tests' paced replay track

    viewer_pcs: dict[str, RTCPeerConnection] = {}
    taps: list = []
    sent_at: dict[bytes, float] = {}  # the last bytes of a payload -> when the publisher sent it
    latencies: list[float] = []
    measuring = [False]

    def time_arrivals(ice) -> None:  # type: ignore[no-untyped-def]
        """Note when each datagram reached the viewer's socket (aioice queues them for the DTLS
        transport, which takes them in order): the latency does not count the viewer's own
        event loop getting round to it."""
        if hasattr(ice, "_bench_arrivals"):
            return
        arrivals: collections.deque = collections.deque()
        ice._bench_arrivals, ice._bench_arrival = arrivals, None
        connection = ice._connection
        queue_it, recv = connection.data_received, ice._recv

        def data_received(data: bytes, component: int) -> None:
            arrivals.append(time.monotonic())
            queue_it(data, component)

        async def timed_recv() -> bytes:
            data = await recv()
            ice._bench_arrival = arrivals.popleft() if arrivals else None
            return data

        connection.data_received, ice._recv = data_received, timed_recv

    def time_received(receiver) -> None:  # type: ignore[no-untyped-def]
        original = receiver._handle_rtp_packet
        ice = receiver.transport.transport
        time_arrivals(ice)

        async def handle(packet, arrival_time_ms):  # type: ignore[no-untyped-def]
            if measuring[0] and len(packet.payload) > 20:
                at = sent_at.get(packet.payload[-16:])
                if at is not None:
                    latencies.append((ice._bench_arrival or time.monotonic()) - at)
            await original(packet, arrival_time_ms=arrival_time_ms)

        receiver._handle_rtp_packet = handle

    async def on_offer(pid: str, sdp: str) -> None:
        pc = viewer_pcs[pid]
        if pc.signalingState == "closed":
            return  # the server renegotiates while the bench tears down
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        for t in pc.getTransceivers():
            if hooks.receiver_tap(t.receiver) is None:
                taps.append(hooks.install_receiver_tap(t.receiver, t.kind))  # count, don't decode
                time_received(t.receiver)
        await pc.setLocalDescription(await pc.createAnswer())
        await server.answer(pid, pc.localDescription.sdp)

    if mode == "janus":
        from bench.janus import JanusServer

        server = JanusServer(on_offer, loopback=loopback)
    else:
        server = _ChildServer(mode, on_offer)
    await server.start()

    async def add_publisher(pid: str, own: dict, role: str) -> RTCPeerConnection:
        pub = RTCPeerConnection(make_configuration([]))
        video = EncodedTrack("video", own["vp8"])
        vt = pub.addTransceiver(video, direction="sendonly")
        pub.addTransceiver(EncodedTrack("audio", own["opus"]), direction="sendonly")
        original = vt.sender._handle_rtcp_packet

        async def handle(packet):  # type: ignore[no-untyped-def]
            if getattr(packet, "fmt", None) in (1, 4) and hasattr(packet, "media_ssrc"):
                video.request_keyframe()
            await original(packet)

        vt.sender._handle_rtcp_packet = handle
        dtls = vt.sender.transport  # one transport for both (max-bundle)
        send_rtp = dtls._send_rtp

        async def timed_send(data: bytes) -> None:
            if len(data) > 40 and not (192 <= data[1] <= 208):  # RTP, not RTCP
                sent_at[data[-16:]] = time.monotonic()
            await send_rtp(data)

        dtls._send_rtp = timed_send
        await server.join(pid, role)
        await pub.setLocalDescription(await pub.createOffer())
        answer = await server.publish(pid, pub.localDescription.sdp)
        await pub.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        return pub

    publishers: list[RTCPeerConnection] = []
    if room:
        for i in range(room):
            pid = f"p{i}"
            viewer_pcs[pid] = RTCPeerConnection(make_configuration([]))
            publishers.append(await add_publisher(pid, media[i % len(media)], "both"))
        await asyncio.sleep(0.5)
        for i in range(room):
            await server.subscribe(f"p{i}")
    else:
        publishers.append(await add_publisher("pub", media[0], "publisher"))
        await asyncio.sleep(0.5)  # the publisher is connected before anyone subscribes (Janus wants its feed)
        for i in range(viewers):
            pid = f"v{i}"
            viewer_pcs[pid] = RTCPeerConnection(make_configuration([]))
            await server.join(pid, "viewer")

    await asyncio.sleep(3.0)  # connect, first keyframes, encoder warm-up (relay mode)
    cpu = server.cpu

    def counts() -> tuple[int, int, int]:
        video_frames = sum(t.frames for t in taps if t.kind == "video")
        frames = sum(t.frames for t in taps)
        packets = sum(t.packets for t in taps)
        return frames, video_frames, packets

    measuring[0] = True
    per_viewer0 = [t.frames for t in taps if t.kind == "video"]
    cpu0, c0, t0 = await cpu(), counts(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, c1, t1 = await cpu(), counts(), time.monotonic()
    measuring[0] = False
    per_viewer = [(b - a) / (t1 - t0) for a, b in zip(per_viewer0, [t.frames for t in taps if t.kind == "video"])]
    for pc in viewer_pcs.values():
        await pc.close()
    await server.close()
    for pub in publishers:
        await pub.close()

    used = cpu1 - cpu0
    frames, video_frames, packets = (c1[i] - c0[i] for i in range(3))
    return {
        "mode": mode,
        "viewers": room or viewers,
        "room": room,
        "cpu_percent": 100 * used / (t1 - t0),
        "frames_per_s": frames / (t1 - t0),
        "us_per_frame": 1e6 * used / frames if frames else float("nan"),
        "us_per_packet": 1e6 * used / packets if packets else float("nan"),
        "packets_per_s": packets / (t1 - t0),
        "video_fps_per_viewer": video_frames / (t1 - t0) / len(per_viewer) if per_viewer else 0.0,
        "min_fps": min(per_viewer, default=0.0),
        "latency_p50_ms": _percentile(latencies, 0.50),
        "latency_p95_ms": _percentile(latencies, 0.95),
        "latency_samples": len(latencies),
    }


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


NAMES = {
    "packets": "rooms/ packet path (default)",
    "frames": "rooms/ frame path (FORWARDING=frames)",
    "relay": "MediaRelay (decode + re-encode)",
    "janus": "Janus 1.1.2 VideoRoom (C)",
}
MIN_FPS = 28.5  # a run where any viewer got less is measured again, not averaged in


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", default="1,2,4")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--modes", default="packets,frames,relay")
    parser.add_argument("--repeats", type=int, default=1, help="runs per cell, alternated between the paths")
    parser.add_argument("--retries", type=int, default=2, help="new runs for one under %.1f fps" % MIN_FPS)
    parser.add_argument("--room", type=int, default=0,
                        help="also a room of this many people who all publish (each sees everyone else)")
    parser.add_argument("--janus-loopback", action="store_true",
                        help="Janus on lo only (LD_PRELOAD shim; for a machine without another interface)")
    args = parser.parse_args()
    if "janus" in args.modes.split(","):
        from bench.janus import ensure_janus

        if not ensure_janus():
            raise SystemExit("janus is not installed (apt-get install janus, as root)")
    width, height = (int(x) for x in args.size.split("x"))
    # One media set per publisher (the room's): each its own bytes, so latency samples match.
    media = [{"vp8": _encode_vp8(width, height), "opus": _encode_opus(tone=440.0 * (1 + i / 4))}
             for i in range(max(1, args.room))]
    modes = args.modes.split(",")
    counts = [int(v) for v in args.viewers.split(",") if v]
    cells = [(v, 0) for v in counts] + ([(args.room, args.room)] if args.room else [])
    runs: dict[tuple[str, int], list[dict]] = {}
    slow: dict[tuple, int] = {}
    failed: dict[tuple, int] = {}
    print(f"load average before: {os.getloadavg()}", flush=True)
    for viewers, room in cells:
        for repeat in range(args.repeats):
            # Alternate the paths run by run (and start with another one each repeat).
            for mode in modes[repeat % len(modes):] + modes[:repeat % len(modes)]:
                if room and mode == "relay":
                    continue  # MediaRelay has no room of publishers here
                got = None
                for attempt in range(1 + args.retries):
                    try:
                        r = asyncio.run(asyncio.wait_for(
                            _measure(mode, viewers, args.seconds, (width, height), media, args.janus_loopback, room),
                            args.seconds + 90))
                    except Exception as exc:  # a run that breaks is reported and measured again
                        print(f"{mode:>7} viewers={viewers:<2} run {repeat + 1} failed: {exc!r}", flush=True)
                        failed[(mode, viewers, room)] = failed.get((mode, viewers, room), 0) + 1
                        continue
                    got = r
                    print(
                        f"{mode:>7} viewers={viewers:<2} run {repeat + 1} server CPU {r['cpu_percent']:6.1f}% "
                        f"{r['packets_per_s']:7.0f} packets/s  {r['us_per_packet']:6.1f} us/packet  "
                        f"video {r['video_fps_per_viewer']:4.1f} fps/viewer (min {r['min_fps']:4.1f})  "
                        f"latency p50 {r['latency_p50_ms']:.2f} p95 {r['latency_p95_ms']:.2f} ms "
                        f"({r['latency_samples']})  load {os.getloadavg()[0]:.2f}",
                        flush=True,
                    )
                    if r["min_fps"] >= MIN_FPS or mode == "relay" or not viewers:
                        break
                    slow[(mode, viewers, room)] = slow.get((mode, viewers, room), 0) + 1
                if got is None:
                    continue  # every attempt failed
                runs.setdefault((mode, viewers, room), []).append(got)
    print(f"load average after: {os.getloadavg()}", flush=True)
    rows = []
    for mode in modes:
        for viewers, room in cells:
            cell = runs.get((mode, viewers, room))
            if not cell:
                continue
            keys = ("cpu_percent", "packets_per_s", "frames_per_s", "us_per_packet", "video_fps_per_viewer",
                    "min_fps", "latency_p50_ms", "latency_p95_ms")
            row = {k: _median([r[k] for r in cell]) for k in keys}
            row.update(mode=mode, viewers=viewers, room=room, runs=len(cell), slow=slow.get((mode, viewers, room), 0))
            rows.append(row)
    # Marginal cost: extra server CPU per extra forwarded packet between consecutive viewer
    # counts of one path (removes the fixed cost of receiving the publisher).
    for prev, r in zip(rows, rows[1:]):
        if prev["mode"] == r["mode"] and not r["room"] and r["packets_per_s"] > prev["packets_per_s"]:
            r["marginal"] = 1e4 * (r["cpu_percent"] - prev["cpu_percent"]) / (r["packets_per_s"] - prev["packets_per_s"])
    frames = {(r["viewers"], r["room"]): r for r in rows if r["mode"] == "frames"}
    janus = {(r["viewers"], r["room"]): r for r in rows if r["mode"] == "janus"}

    def ratio(r: dict, base: Optional[dict]) -> str:
        if base is None or base is r:
            return "–"
        text = f"{r['us_per_packet'] / base['us_per_packet']:.2f}"
        if "marginal" in r and "marginal" in base and base["marginal"] > 0:
            text += f" / {r['marginal'] / base['marginal']:.2f}"
        return text

    print()
    print("| path | viewers | server CPU (% of a core) | packets/s out | µs CPU / forwarded packet (all-in) "
          "| marginal µs / extra forwarded packet | × frame path (all-in / marginal) | × Janus (all-in / marginal) "
          "| video fps per viewer (lowest) | added latency p50 / p95 (ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        marginal = f"{r['marginal']:.0f}" if "marginal" in r else "–"
        latency = "–" if r["latency_p95_ms"] != r["latency_p95_ms"] else f"{r['latency_p50_ms']:.1f} / {r['latency_p95_ms']:.1f}"
        print(
            f"| {NAMES.get(r['mode'], r['mode'])} | {'room of %d, all publish' % r['room'] if r['room'] else r['viewers']} | {r['cpu_percent']:.1f} | {r['packets_per_s']:.0f} | "
            f"{r['us_per_packet']:.0f} | {marginal} | {ratio(r, frames.get((r['viewers'], r['room'])))} | "
            f"{ratio(r, janus.get((r['viewers'], r['room'])))} | {r['video_fps_per_viewer']:.1f} ({r['min_fps']:.1f}) | {latency} |"
        )
    if slow:
        print("\nruns measured again (a viewer under %.1f fps): %s" % (MIN_FPS, slow))
    if failed:
        print("\nruns that failed and were measured again: %s" % failed)


if __name__ == "__main__":
    main()
