"""Server CPU of recording every participant (recordings/ SessionRecorder) on top of
forwarding, against forwarding alone measured in the same run.

Same structure as bench/forwarding.py: the server (a rooms/ Room, plus a
SessionRecorder writing to a temporary RECORDINGS_DIR in "record" mode) runs in a
child process whose CPU time (all threads, so the recorder's writer thread counts)
is measured over a window; the clients run here as real aiortc peers on loopback,
replaying pre-encoded VP8 320x240 + Opus and counting received frames with rooms'
receiver hook (no decoding). A room "P:V" has P participants who publish and watch
each other, plus V who only watch. The two modes alternate, repeated, and the median
is reported. In "record" mode the server also measures the recorder's own work on
the event loop (thread CPU per frame taken, and the longest single call).

    python bench/recording.py [--rooms 1:4,2:0,4:0] [--seconds 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402

from forwarding import _encode_opus, _encode_vp8  # noqa: E402  (bench/forwarding.py)
from rooms import aiortc_hooks as hooks  # noqa: E402
from rooms.peers import make_configuration  # noqa: E402

# ----------------------------------------------------------------------------- server side


async def _server_main(mode: str, root: str, conn) -> None:  # type: ignore[no-untyped-def]
    from recordings import DirectoryStore, SessionRecorder
    from rooms import Room

    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: inbox.put_nowait(conn.recv()))
    send = conn.send
    room = Room("bench", on_subscribe_offer=lambda pid, msg: send({"op": "offer", "pid": pid, "sdp": msg["sdp"]}))
    recorder = None
    on_loop = {"cpu": 0.0, "max": 0.0}
    if mode == "record":
        recorder = SessionRecorder(DirectoryStore(root), "bench/session-1")
        room.on_producer_added = lambda producer: recorder.record_producer(room, producer)
        _instrument(on_loop)
    while True:
        msg = await inbox.get()
        op = msg["op"]
        if op == "join":
            room.join(msg["pid"], msg["pid"], "mediator" if msg["pid"] == "p0" else "party", area="main")
        elif op == "publish":
            answer = await room.handle_publish_offer(msg["pid"], msg["sdp"], "offer")
            send({"op": "answer", "pid": msg["pid"], "sdp": answer["sdp"]})
        elif op == "answer":
            await room.handle_subscribe_answer(msg["pid"], msg["sdp"], "answer")
        elif op == "cpu":
            if msg.get("reset"):
                on_loop["max"] = 0.0
            recorded = sum(s["recorded"] for s in recorder.stats()) if recorder else 0
            send({"op": "cpu", "cpu": time.process_time(), "recorded": recorded,
                  "on_loop_cpu": on_loop["cpu"], "on_loop_max": on_loop["max"], "writer_cpu": _writer_cpu(recorder)})
        elif op == "quit":
            files = size = 0
            if recorder is not None:
                manifest = await recorder.stop()
                files, size = len(manifest.files), sum(f.size for f in manifest.files)
            await room.close()
            send({"op": "bye", "files": files, "bytes": size})
            return


def _writer_cpu(recorder) -> float:  # type: ignore[no-untyped-def]
    """CPU seconds of the recorder's writer thread (Linux thread CPU clock)."""
    writer = getattr(recorder, "_writer", None)
    if writer is None or writer.ident is None or not writer.is_alive():
        return 0.0
    return time.clock_gettime(time.pthread_getcpuclockid(writer.ident))


def _instrument(on_loop: dict) -> None:
    """Measure the recorder's work on the event loop: CPU of every frame it takes
    (sink push: segment decisions, timestamps, the hand-over to its writer thread).
    Thread CPU time, so being preempted by the OS does not count."""
    from recordings import recorder as module

    def timed(fn):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            t = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                d = time.thread_time() - t
                on_loop["cpu"] += d
                on_loop["max"] = max(on_loop["max"], d)
        return wrapper

    module.SessionRecorder._on_frame = timed(module.SessionRecorder._on_frame)


def _run_server(mode: str, root: str, conn) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(_server_main(mode, root, conn))


# ----------------------------------------------------------------------------- client side


async def _measure(mode: str, publishers: int, viewers: int, seconds: float, media: dict) -> dict:
    from tests.rooms.clients import EncodedTrack  # the tests' paced replay track

    root = tempfile.mkdtemp(prefix="bench-rec-")
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(target=_run_server, args=(mode, root, child), daemon=True)
    proc.start()
    loop = asyncio.get_running_loop()
    replies: dict[str, asyncio.Queue] = {}
    subs: dict[str, RTCPeerConnection] = {}
    pubs: list[RTCPeerConnection] = []
    taps: list = []
    answering: dict[str, asyncio.Lock] = {}

    def q(key: str) -> asyncio.Queue:
        return replies.setdefault(key, asyncio.Queue())

    async def reply(key: str) -> dict:
        try:
            return await asyncio.wait_for(q(key).get(), 60)
        except asyncio.TimeoutError:
            raise RuntimeError(f"the server process did not answer {key!r} (exit code {proc.exitcode})") from None

    async def on_offer(pid: str, sdp: str) -> None:
        async with answering.setdefault(pid, asyncio.Lock()):
            pc = subs[pid]
            if pc.signalingState == "closed":
                return
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
    pids = [f"p{i}" for i in range(publishers + viewers)]
    for pid in pids:
        subs[pid] = RTCPeerConnection(make_configuration([]))
        parent.send({"op": "join", "pid": pid})
    for pid in pids[:publishers]:
        pc = RTCPeerConnection(make_configuration([]))
        pubs.append(pc)
        video = EncodedTrack("video", media["vp8"])
        vt = pc.addTransceiver(video, direction="sendonly")
        pc.addTransceiver(EncodedTrack("audio", media["opus"]), direction="sendonly")
        original = vt.sender._handle_rtcp_packet

        async def handle(packet, original=original, video=video):  # type: ignore[no-untyped-def]
            if getattr(packet, "fmt", None) in (1, 4) and hasattr(packet, "media_ssrc"):
                video.request_keyframe()
            await original(packet)

        vt.sender._handle_rtcp_packet = handle
        await pc.setLocalDescription(await pc.createOffer())
        parent.send({"op": "publish", "pid": pid, "sdp": pc.localDescription.sdp})
        answer = await reply("answer")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    await asyncio.sleep(3.0)  # connect, renegotiate, first keyframes

    async def cpu(reset: bool = False) -> dict:
        parent.send({"op": "cpu", "reset": reset})
        return await reply("cpu")

    def received() -> tuple[int, int]:
        return sum(t.frames for t in taps), sum(t.frames for t in taps if t.kind == "video")

    s0, c0, t0 = await cpu(reset=True), received(), time.monotonic()
    await asyncio.sleep(seconds)
    s1, c1, t1 = await cpu(), received(), time.monotonic()
    for pc in subs.values():
        await pc.close()
    parent.send({"op": "quit"})
    bye = await reply("bye")
    loop.remove_reader(parent.fileno())
    proc.join(10)
    for pc in pubs:
        await pc.close()
    shutil.rmtree(root, ignore_errors=True)

    span = t1 - t0
    out_frames = c1[0] - c0[0]
    watchers = publishers + viewers - 1
    return {
        "mode": mode,
        "publishers": publishers,
        "viewers": viewers,
        "cpu_percent": 100 * (s1["cpu"] - s0["cpu"]) / span,
        "frames_out_per_s": out_frames / span,
        "recorded_per_s": (s1["recorded"] - s0["recorded"]) / span,
        "video_fps_per_stream": (c1[1] - c0[1]) / span / max(1, publishers * watchers),
        "loop_us_per_recorded": (
            1e6 * (s1["on_loop_cpu"] - s0["on_loop_cpu"]) / (s1["recorded"] - s0["recorded"])
            if s1["recorded"] > s0["recorded"] else 0.0
        ),
        "loop_max_us": 1e6 * s1["on_loop_max"],
        # The recorder's own CPU, measured directly: its work on the loop + its thread.
        "recorder_cpu_percent": 100 * ((s1["on_loop_cpu"] - s0["on_loop_cpu"]) + (s1["writer_cpu"] - s0["writer_cpu"])) / span,
        "files": bye["files"],
        "bytes": bye["bytes"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", default="1:4,2:0,4:0", help="P:V = P publishing participants + V viewers")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", default="320x240")
    args = parser.parse_args()
    width, height = (int(x) for x in args.size.split("x"))
    media = {"vp8": _encode_vp8(width, height), "opus": _encode_opus()}
    table = []
    for spec in args.rooms.split(","):
        publishers, viewers = (int(x) for x in spec.split(":"))
        runs: dict[str, list[dict]] = {"forward": [], "record": []}
        for _ in range(args.repeats):
            for mode in ("forward", "record"):  # alternate: drift hits both alike
                for attempt in range(3):
                    r = asyncio.run(_measure(mode, publishers, viewers, args.seconds, media))
                    print(
                        f"{spec:>5} {mode:>7}: server CPU {r['cpu_percent']:5.1f}%  out {r['frames_out_per_s']:6.0f} fr/s  "
                        f"recorded {r['recorded_per_s']:5.0f} fr/s  video {r['video_fps_per_stream']:4.1f} fps  "
                        f"recorder itself {r['recorder_cpu_percent']:4.2f}% (on loop {r['loop_us_per_recorded']:4.1f} "
                        f"us/frame, max call {r['loop_max_us']:4.0f} us)",
                        flush=True,
                    )
                    # A run where the clients (this process) could not keep up
                    # forwards less and is not comparable: measure it again.
                    if r["video_fps_per_stream"] >= 28.5:
                        break
                    print("        (clients fell behind: run discarded)", flush=True)
                r["us_per_forwarded"] = 1e4 * r["cpu_percent"] / r["frames_out_per_s"]
                runs[mode].append(r)
        med = {m: {k: statistics.median(r[k] for r in rs) for k in rs[0] if isinstance(rs[0][k], (int, float))}
               for m, rs in runs.items()}
        fwd, rec = med["forward"], med["record"]
        table.append({
            "room": f"{publishers} publishing + {viewers} watching",
            "fwd": fwd, "rec": rec,
            # Server CPU per forwarded frame, so a run that forwarded a little less
            # does not pass for a cheaper one.
            "overhead": 100 * (rec["us_per_forwarded"] / fwd["us_per_forwarded"] - 1),
            "direct": 100 * rec["recorder_cpu_percent"] / fwd["cpu_percent"],
            "us_per_recorded": 1e4 * rec["recorder_cpu_percent"] / rec["recorded_per_s"] if rec["recorded_per_s"] else 0.0,
            "spread": (min(r["cpu_percent"] for r in runs["forward"]), max(r["cpu_percent"] for r in runs["forward"]),
                       min(r["cpu_percent"] for r in runs["record"]), max(r["cpu_percent"] for r in runs["record"])),
        })
    print()
    print("| room | forwarded frames/s | recorded frames/s | server CPU, forwarding only (% of a core, min–max) "
          "| server CPU, forwarding + recording | difference (CPU per forwarded frame) | recorder's own CPU (loop + writer thread) "
          "| µs / recorded frame | recorder work on the event loop: µs / frame, longest call |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in table:
        fwd, rec, (f0, f1, r0, r1) = row["fwd"], row["rec"], row["spread"]
        print(
            f"| {row['room']} | {fwd['frames_out_per_s']:.0f} | {rec['recorded_per_s']:.0f} | "
            f"{fwd['cpu_percent']:.1f} ({f0:.1f}–{f1:.1f}) | {rec['cpu_percent']:.1f} ({r0:.1f}–{r1:.1f}) | "
            f"{row['overhead']:+.1f} % | {rec['recorder_cpu_percent']:.2f} % of a core = {row['direct']:.1f} % of forwarding | "
            f"{row['us_per_recorded']:.1f} | {rec['loop_us_per_recorded']:.1f} µs, {rec['loop_max_us']:.0f} µs |"
        )


if __name__ == "__main__":
    main()
