"""Narrow and lossy links in the network lab: what a constrained party receives, and what it costs
the others.

A mediator (M) and two parties (A, B), each a real headless Chromium (fake camera and
microphone) in a network namespace of its own, on an emulated link to the server's namespace
(tests/support/netlab.py). M's and A's links stay clean; B's link gets the profile (both
directions unless said):

  clean      nothing
  loss3      3 % random loss, 20 ms each way (40 ms round trip)
  loss10     10 % random loss, 40 ms round trip
  rate400    a 400 kbit/s bottleneck with a 30 KB tail-drop queue, 40 ms round trip
  rate150    a 150 kbit/s bottleneck with a 30 KB tail-drop queue, 40 ms round trip
  rtt600     300 ms each way
  outage6    the link down for 6 s in the middle of the window

Each profile: everyone joins (A and B admitted from the lobby by M), media flows every way,
the profile is applied, it settles (5 s, --settle), then a window (40 s, --seconds) is measured
with getStats deltas on every page:

  - what B receives of M and of A: video fps (framesDecoded / s), freeze fraction (inbound-rtp
    totalFreezesDuration / window; Chrome counts a freeze only when the next frame comes, so one
    still open at an edge of the window is added from framesDecoded sampled every 0.5 s), the
    resolution at the end, audio concealment (concealedSamples / totalSamplesReceived);
  - kbit/s the server offered towards B (the link emulator's down-direction offered_bytes over the
    window, IP packets) and what the link delivered, against the link's rate;
  - what the healthy viewer A receives of M (must not be hurt by B);
  - what M and A receive of B's own video (B's uplink);
  - M's publisher: keyframes encoded (outbound-rtp keyFramesEncoded) and PLIs received in the
    window, so B's losses must not flood it with keyframe requests; its sent frame rate;
  - whether a page rejoined (window.mediationRoom.joins > 1) or logged errors;
  - the host's CPU use over the window (/proc/stat) and its load average.

With --baseline (the default) every profile is also run against a server started with
ADAPTATION=off (the server's adaptation to a viewer's link switched off); the two modes are
interleaved profile by profile. One table per mode is printed and written to
docs/benchmarks.md ("## Narrow and lossy links") unless --no-write. Needs root (network
namespaces) and Chromium; run the measured run with nothing else on the machine.

    .venv/bin/python bench/network.py [--runs 1] [--seconds 40] [--only clean rate150] [--no-baseline] [--no-write]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import statistics
import sys
import tempfile
import textwrap
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.scale import write_section  # noqa: E402
from tests.browser.conftest import DESKTOP, PHONE  # noqa: E402
from tests.browser.lab_helpers import admit, browser_in, lab_deployment, page_in  # noqa: E402
from tests.browser.room_helpers import open_room, wait_js  # noqa: E402
from tests.support import netlab  # noqa: E402

HEADING = "## Narrow and lossy links"
CLEAN = {"delay": 0.0, "loss": 0.0, "rate": 0.0, "queue": 64 * 1024, "down": False}
RTT40 = {"delay": 0.02}
QUEUE = 30_000
OUTAGE = 6.0
# B's link during the window: settings for both directions (outage6 is timed inside the window).
PROFILES: dict[str, dict] = {
    "clean": {},
    "loss3": {**RTT40, "loss": 0.03},
    "loss10": {**RTT40, "loss": 0.10},
    "rate400": {**RTT40, "rate": 400_000, "queue": QUEUE},
    "rate150": {**RTT40, "rate": 150_000, "queue": QUEUE},
    "rtt600": {"delay": 0.3},
    "outage6": {},
    "busy": {},  # clean links, the host kept busy by a CPU burner (BURNER) during settle and window
}
# The busy profile: one process spinning at full speed (nice 0) next to the server and browsers,
# so the host is well over 80 % busy (the CPU column says how busy); publishers must still reach
# at least 80 % of the bitrate they reach in the clean profile.
BURNER = [sys.executable, "-c", "while True: pass"]
MODES = {"on": {}, "off": {"ADAPTATION": "off"}}
STATS_TIMEOUT_MS = 8000
SAMPLE = 0.5   # s between decoded-frame samples during settle and window
STALL = 1.0    # s without a decoded frame: a freeze still open at a window's edge

# One page's counters: inbound per publisher (the server's track table maps mid -> participant)
# and kind, summed over that publisher's receivers; the page's own outbound and capture; joins
# and errors. Resolution from the active receiver. A guard answers 'timeout' if getStats hangs.
SNAPSHOT_JS = """async (limit) => {
  const R = window.mediationRoom; if (!R) return 'no room';
  const work = async () => {
    const byMid = {}, active = new Set();
    (R.trackTable || []).forEach(t => {
      if (!t) return;
      if (t.active) { byMid[t.mid] = t.participant_id; active.add(t.mid); }
      else if (!(t.mid in byMid)) byMid[t.mid] = t.participant_id;
    });
    const IN = ['framesDecoded', 'totalFreezesDuration', 'freezeCount', 'framesDropped', 'keyFramesDecoded',
                'pliCount', 'nackCount', 'packetsLost', 'packetsReceived', 'bytesReceived',
                'concealedSamples', 'totalSamplesReceived'];
    const OUT = ['framesEncoded', 'keyFramesEncoded', 'pliCount', 'firCount', 'nackCount', 'bytesSent',
                 'packetsSent', 'retransmittedPacketsSent'];
    const inbound = {}, outbound = {video: {}, audio: {}}, capture = {frames: 0};
    if (R.subPc) (await R.subPc.getStats()).forEach(r => {
      if (r.type !== 'inbound-rtp') return;
      const pid = byMid[r.mid] || '?';
      const e = (inbound[pid] = inbound[pid] || {});
      const k = (e[r.kind] = e[r.kind] || {receivers: 0});
      k.receivers += 1;
      IN.forEach(f => { k[f] = (k[f] || 0) + (r[f] || 0); });
      if (r.kind === 'video' && (active.has(r.mid) || !k.width)) {
        k.width = r.frameWidth || 0; k.height = r.frameHeight || 0;
      }
    });
    const videoOut = [];
    if (R.pubPc) (await R.pubPc.getStats()).forEach(r => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') videoOut.push(r);
      else if (r.type === 'outbound-rtp' && outbound[r.kind]) {
        const k = outbound[r.kind];
        OUT.forEach(f => { k[f] = (k[f] || 0) + (r[f] || 0); });
      }
      // One media-source per sender of the camera's track (the camera's and its small encoding's).
      if (r.type === 'media-source' && r.kind === 'video') capture.frames = Math.max(capture.frames, r.frames || 0);
    });
    // The camera's own encoding (its m-line comes before the small encoding's): its frames,
    // keyframes, feedback, size; the bytes of both (what the uplink carries).
    videoOut.sort((x, y) => Number(x.mid) - Number(y.mid));
    if (videoOut.length) {
      const k = outbound.video, cam = videoOut[0];
      OUT.forEach(f => { k[f] = f === 'bytesSent' ? videoOut.reduce((n, r) => n + (r[f] || 0), 0) : (cam[f] || 0); });
      k.width = cam.frameWidth || 0; k.height = cam.frameHeight || 0;
      k.limitation = cam.qualityLimitationReason || '';
    }
    return {inbound, outbound, capture, joins: R.joins, me: R.me && R.me.id,
            errors: (R.errors || []).map(e => (e && (e.code || e.message)) || String(e))};
  };
  return await Promise.race([work(), new Promise(res => setTimeout(() => res('timeout'), limit))]);
}"""
ME_JS = "() => window.mediationRoom && window.mediationRoom.me && window.mediationRoom.me.id"
PAGE_STATE_JS = """() => { const R = window.mediationRoom; if (!R) return null;
  return {screen: R.screen, joins: R.joins, pub: R.pubPc && R.pubPc.connectionState,
          sub: R.subPc && R.subPc.connectionState, errors: (R.errors || []).slice(-3)}; }"""
DECODED_JS = """async (limit) => {
  const R = window.mediationRoom; if (!R || !R.subPc) return {};
  const work = async () => {
    const byMid = {}; (R.trackTable || []).forEach(t => { if (t && t.active) byMid[t.mid] = t.participant_id; });
    const out = {};
    (await R.subPc.getStats()).forEach(r => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') {
        const pid = byMid[r.mid] || '?'; out[pid] = (out[pid] || 0) + (r.framesDecoded || 0); } });
    return out;
  };
  return await Promise.race([work(), new Promise(res => setTimeout(() => res({}), limit))]);
}"""


# ---------------------------------------------------------------------------------- helpers


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:9]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def snapshot(page, who: str) -> tuple[dict, float]:
    got = page.evaluate(SNAPSHOT_JS, STATS_TIMEOUT_MS)
    if not isinstance(got, dict):
        raise RuntimeError(f"{who}: statistics unavailable ({got})")
    return got, time.monotonic()


def _counter(snap: dict, pid: str, kind: str, field: str) -> float | None:
    value = snap["inbound"].get(pid, {}).get(kind, {}).get(field)
    return None if value is None else float(value)


def reception(s0: tuple[dict, float], s1: tuple[dict, float], pid: str,
              last0: float | None = None, last1: float | None = None) -> dict:
    """What a page received of publisher `pid` over the window between two snapshots. `last0` /
    `last1`: when its decoded-frame count last moved before the window's start / end (FrameClock);
    a gap longer than Chrome's own freeze threshold (3 frame intervals at the window's frame rate,
    at least STALL s) is a freeze still open there."""
    (a, t0), (b, t1) = s0, s1
    window = t1 - t0

    def d(kind, field):
        x1, x0 = _counter(b, pid, kind, field), _counter(a, pid, kind, field)
        return None if x1 is None else x1 - (x0 or 0.0)

    frames, freezes = d("video", "framesDecoded"), d("video", "totalFreezesDuration")
    concealed, samples = d("audio", "concealedSamples"), d("audio", "totalSamplesReceived")
    video = b["inbound"].get(pid, {}).get("video", {})
    threshold = max(STALL, 3 * window / frames) if frames else STALL
    open0 = last0 if last0 is not None and t0 - last0 > threshold else None
    open1 = last1 if last1 is not None and t1 - last1 > threshold else None
    if freezes is not None:
        if open0 is not None and frames:      # ended inside the window: Chrome counted all of it
            freezes = max(0.0, freezes - (t0 - open0))
        if open1 is not None:                 # still open: Chrome has not counted it yet
            freezes += t1 - max(open1, t0)
    return {
        "fps": None if frames is None else frames / window,
        "freeze": None if freezes is None else min(1.0, freezes / window),
        "freezes": d("video", "freezeCount"),
        "width": video.get("width") if frames else None, "height": video.get("height") if frames else None,
        "conceal": None if not samples else (concealed or 0.0) / samples,
        "video_lost": d("video", "packetsLost"), "video_packets": d("video", "packetsReceived"),
        "kbps_in": None if d("video", "bytesReceived") is None else
        ((d("video", "bytesReceived") or 0) + (d("audio", "bytesReceived") or 0)) * 8 / window / 1000,
        "plis_sent": d("video", "pliCount"), "nacks_sent": d("video", "nackCount"),
    }


def publisher(s0: tuple[dict, float], s1: tuple[dict, float]) -> dict:
    """A page's own publishing over the window: frames captured / encoded, keyframes, requests."""
    (a, t0), (b, t1) = s0, s1
    window = t1 - t0
    va, vb = a["outbound"]["video"], b["outbound"]["video"]

    def d(field):
        return (vb.get(field) or 0) - (va.get(field) or 0)

    sent = d("bytesSent") + (b["outbound"]["audio"].get("bytesSent") or 0) - (a["outbound"]["audio"].get("bytesSent") or 0)
    return {"capture_fps": (b["capture"]["frames"] - a["capture"]["frames"]) / window,
            "sent_fps": d("framesEncoded") / window, "keyframes": d("keyFramesEncoded"),
            "plis": d("pliCount"), "firs": d("firCount"), "nacks": d("nackCount"),
            "packets": d("packetsSent"), "resent": d("retransmittedPacketsSent"),
            "kbps_out": sent * 8 / window / 1000,
            "width": vb.get("width"), "height": vb.get("height"), "limitation": vb.get("limitation")}


def link_rates(l0: tuple[dict, float], l1: tuple[dict, float]) -> dict:
    (a, t0), (b, t1) = l0, l1
    window = t1 - t0
    out = {}
    for name in ("down", "up"):
        x, y = a[name], b[name]
        offered = y["offered_packets"] - x["offered_packets"]
        dropped = sum(y[k] - x[k] for k in ("dropped_loss", "dropped_queue", "dropped_down"))
        out[name] = {"offered_kbps": (y["offered_bytes"] - x["offered_bytes"]) * 8 / window / 1000,
                     "delivered_kbps": (y["delivered_bytes"] - x["delivered_bytes"]) * 8 / window / 1000,
                     "dropped_queue": y["dropped_queue"] - x["dropped_queue"],
                     "dropped_share": dropped / offered if offered else 0.0}
    return out


def all_decoding(pages: dict, timeout: float) -> dict:
    """Until every page decodes the video of both others (its count of their frames rising between
    two polls); returns their participant ids, read afresh each poll (a page that rejoined during
    the join may be a new participant)."""
    deadline = time.monotonic() + timeout
    missing: list[str] = []
    before: dict = {}
    while time.monotonic() < deadline:
        ids = {who: page.evaluate(ME_JS) for who, page in pages.items()}
        missing = []
        for who, page in pages.items():
            got = page.evaluate(DECODED_JS, STATS_TIMEOUT_MS)
            for other in pages:
                if other == who:
                    continue
                n = got.get(ids[other] or "", 0)
                if not n or n <= before.get((who, ids[other]), n):
                    missing.append(f"{who}<-{other}")
                before[(who, ids[other])] = n
        if not missing:
            return ids
        time.sleep(1.0)
    states = {who: page.evaluate(PAGE_STATE_JS) for who, page in pages.items()}
    raise TimeoutError(f"media not flowing within {timeout:.0f} s: {', '.join(missing)}; pages: {states}")


class FrameClock:
    """When each page last saw each other publisher's decoded-frame count move, from samples every
    SAMPLE s. Chrome adds a freeze to totalFreezesDuration only when the next frame comes, so a
    stream still frozen at the window's end (or frozen all along) would count as not frozen; this
    clock supplies the open freezes at both ends of the window."""

    def __init__(self, pages: dict, ids: dict):
        self.pages, self.ids, self.seen = pages, ids, {}

    def sample(self) -> None:
        for who, page in self.pages.items():
            got = page.evaluate(DECODED_JS, STATS_TIMEOUT_MS)
            now = time.monotonic()
            for other, pid in self.ids.items():
                n = got.get(pid, 0)
                if other != who and (self.seen.get((who, other), (None,))[0] != n):
                    self.seen[(who, other)] = (n, now)

    def last_moved(self, who: str, other: str) -> float | None:
        """When `who` last saw its count of `other`'s decoded frames move (None: never sampled)."""
        got = self.seen.get((who, other))
        return got[1] if got else None

    def run_for(self, seconds: float, events: list | None = None) -> None:
        """Sample for `seconds`, doing each (offset s, action) of `events` when it is due."""
        start = time.monotonic()
        pending = sorted(events or [], key=lambda e: e[0])
        while True:
            now = time.monotonic()
            while pending and now - start >= pending[0][0]:
                pending.pop(0)[1]()
            if now - start >= seconds:
                return
            self.sample()
            wake = min([start + seconds, time.monotonic() + SAMPLE] + [start + e[0] for e in pending])
            time.sleep(max(0.0, wake - time.monotonic()))


def enter(page, timeout: float = 60) -> str:
    """tests.browser.lab_helpers.enter with a bounded click: on a busy host the step's button can go
    (the next step replaces it) between the visibility check and the click, which then waited its
    full 20 s and failed the run; here that click gives up after 3 s and the loop looks again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    wait_js(page, "document.querySelector('#self-video').videoWidth > 0", "own preview", 30)
    page.click("[data-testid=enter]")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = page.evaluate("() => window.mediationRoom && window.mediationRoom.screen")
        if screen not in ("precheck", "connecting", "step"):
            return screen
        if screen == "step" and page.locator("#step-yes").is_visible():
            try:
                page.click("#step-yes", timeout=3000)
            except PlaywrightTimeout:
                pass
        time.sleep(0.1)
    raise TimeoutError(f"the page did not get past the join steps within {timeout:.0f} s")


def kill_namespace(ns: netlab.Namespace) -> int:
    """SIGKILL what still runs inside a participant namespace (only the Chromium started there)."""
    out = netlab._ip("netns", "pids", ns.name, check=False).stdout.split()
    for pid in out:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ValueError, ProcessLookupError, PermissionError):
            pass
    return len(out)


class Watchdog:
    """If a run outlives its deadline, its browsers are killed: the next Playwright call then fails
    and the run is reported as failed instead of hanging the benchmark."""

    def __init__(self, seconds: float, namespaces: list, what: str):
        self.fired = False
        self.timer = threading.Timer(seconds, self._fire, args=(seconds, namespaces, what))
        self.timer.daemon = True

    def _fire(self, seconds, namespaces, what):
        self.fired = True
        print(f"watchdog: {what} took longer than {seconds:.0f} s, killing its browsers", flush=True)
        for ns in namespaces:
            kill_namespace(ns)

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()
        return False


# ---------------------------------------------------------------------------------- one run


def one_run(pw, d, title: str, profile: str, seconds: float, settle: float) -> dict:
    links = open_room(d["server"], title)
    parts = d["parts"]  # mediator, A, B
    b_link = parts[2][1]
    browsers = []
    burner = None
    try:
        origins = []
        for ns, link in parts:
            browser, origin = browser_in(pw, ns, link, d["host"])
            browsers.append(browser)
            origins.append(origin)
        m = page_in(browsers[0], DESKTOP)
        a = page_in(browsers[1], PHONE)
        b = page_in(browsers[2], PHONE)
        m.goto(f"{origins[0]}/join/{links.mediator_token}")
        enter(m)
        wait_js(m, "window.mediationRoom.me && window.mediationRoom.me.id", "mediator id", 20)
        for page, token, origin in ((a, links.party_tokens[0], origins[1]), (b, links.party_tokens[1], origins[2])):
            page.goto(f"{origin}/join/{token}")
            enter(page)
            admit(m, page)
        pages = {"M": m, "A": a, "B": b}
        ids = all_decoding(pages, 90)

        if PROFILES[profile]:
            b_link.set(both=PROFILES[profile])
        if profile == "busy":
            burner = subprocess.Popen(BURNER)
        clock = FrameClock(pages, ids)
        clock.run_for(settle)

        load0 = os.getloadavg()[0]
        c0, l0 = machine_cpu(), (b_link.stats(), time.monotonic())
        s0 = {who: snapshot(p, who) for who, p in pages.items()}
        ids.update({who: s0[who][0]["me"] for who in pages if s0[who][0]["me"]})  # a rejoin while settling
        clock.sample()  # a count that moved just before the snapshot is not an open freeze
        last0 = {(w, o): clock.last_moved(w, o) for w in pages for o in pages if o != w}
        events = []
        if profile == "outage6":
            before = max(0.0, (seconds - OUTAGE) / 2)
            events = [(before, lambda: b_link.outage(True)), (before + OUTAGE, lambda: b_link.outage(False))]
        try:
            clock.run_for(seconds, events)
        finally:
            if profile == "outage6":
                b_link.outage(False)
            if burner is not None:
                burner.kill()
                burner.wait()
        s1 = {who: snapshot(p, who) for who, p in pages.items()}
        l1, c1 = (b_link.stats(), time.monotonic()), machine_cpu()
        load1 = os.getloadavg()[0]
        clock.sample()
        last1 = {(w, o): clock.last_moved(w, o) for w in pages for o in pages if o != w}

        def recv(who, other):
            return reception(s0[who], s1[who], ids[other], last0[(who, other)], last1[(who, other)])

        out = {
            "b_from_m": recv("B", "M"),
            "b_from_a": recv("B", "A"),
            "a_from_m": recv("A", "M"),
            "m_from_b": recv("M", "B"),
            "a_from_b": recv("A", "B"),
            "m_pub": publisher(s0["M"], s1["M"]),
            "b_pub": publisher(s0["B"], s1["B"]),
            "link": link_rates(l0, l1),
            "cpu": (c1[0] - c0[0]) / max(c1[1] - c0[1], 1e-9),
            "load": (load0, load1),
            "window": s1["B"][1] - s0["B"][1],
            "rejoined": [who for who in pages if (s1[who][0]["joins"] or 0) > 1],
            "rejoined_in_window": [who for who in pages if (s1[who][0]["joins"] or 0) > (s0[who][0]["joins"] or 0)],
            "new_id_in_window": [who for who in pages if s1[who][0]["me"] != ids[who]],
            "errors": {who: s1[who][0]["errors"] for who in pages if s1[who][0]["errors"]},
        }
        b_total = [out["b_from_m"], out["b_from_a"]]
        fps = [r["fps"] for r in b_total if r["fps"] is not None]
        freeze = [r["freeze"] for r in b_total if r["freeze"] is not None]
        conceal = [r["conceal"] for r in b_total if r["conceal"] is not None]
        out["b_total"] = {"fps": statistics.mean(fps) if fps else None,
                          "freeze": statistics.mean(freeze) if freeze else None,
                          "conceal": statistics.mean(conceal) if conceal else None}
        return out
    finally:
        try:
            b_link.set(both=CLEAN)
        except Exception:  # noqa: BLE001 - the lab may be gone already; it is removed next anyway
            pass
        for browser in browsers:
            try:
                browser.close()
            except Exception:  # noqa: BLE001 - killed by the watchdog or crashed
                pass
        for ns, _link in parts:
            kill_namespace(ns)


# ---------------------------------------------------------------------------------- report


def _med(values):
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def _num(v, spec=".1f") -> str:
    return "–" if v is None else format(v, spec)


def _res(runs: list[dict], key: str) -> str:
    last = runs[-1][key]
    return f"{last['width']}x{last['height']}" if last.get("width") else "–"


def _recv(runs: list[dict], key: str, resolution: bool = False) -> str:
    parts = [f"{_num(_med(r[key]['fps'] for r in runs))} fps", _pct(_med(r[key]["freeze"] for r in runs)) + " frozen"]
    if resolution:
        parts.append(_res(runs, key))
    parts.append(_pct(_med(r[key]["conceal"] for r in runs)) + " concealed")
    return " · ".join(parts)


TABLE_HEAD = ("| B's link | runs | B ← mediator | B ← A | B total (mean of both) | towards B: server offered / "
              "link delivered kbit/s (link rate) | A ← mediator | B's uplink (what the others receive of B) | "
              "mediator's publisher: keyframes / PLIs in the window, sent fps, kbit/s sent (B's) | rejoins / errors | "
              "host CPU (load) |\n|---|---|---|---|---|---|---|---|---|---|---|")


def table_rows(rows: list[tuple[str, list[dict], list[str]]]) -> list[str]:
    lines = [TABLE_HEAD]
    for profile, runs, failures in rows:
        failed = f" ({len(failures)} failed)" if failures else ""
        if not runs:
            why = failures[0].split("; pages:")[0][:160].replace("|", "/") if failures else "no runs"
            lines.append(f"| {profile} | 0{failed} | failed: {why} |"
                         + " |" * 8)
            continue
        rate = PROFILES[profile].get("rate")
        down = [r["link"]["down"] for r in runs]
        link = (f"{_num(_med(x['offered_kbps'] for x in down), '.0f')} / "
                f"{_num(_med(x['delivered_kbps'] for x in down), '.0f')} "
                f"({f'{rate / 1000:.0f} kbit/s' if rate else 'unlimited'}, "
                f"{_pct(_med(x['dropped_share'] for x in down))} of packets dropped)")
        total = (f"{_num(_med(r['b_total']['fps'] for r in runs))} fps · "
                 f"{_pct(_med(r['b_total']['freeze'] for r in runs))} frozen · "
                 f"{_pct(_med(r['b_total']['conceal'] for r in runs))} concealed")
        uplink = f"mediator ← B: {_recv(runs, 'm_from_b')}; A ← B: {_recv(runs, 'a_from_b')}"
        pub = (f"{_num(_med(r['m_pub']['keyframes'] for r in runs), '.0f')} / "
               f"{_num(_med(r['m_pub']['plis'] for r in runs), '.0f')}, "
               f"{_num(_med(r['m_pub']['sent_fps'] for r in runs))} fps, "
               f"{_num(_med(r['m_pub']['kbps_out'] for r in runs), '.0f')} kbit/s (B "
               f"{_num(_med(r['b_pub']['kbps_out'] for r in runs), '.0f')})")
        rejoins = sum(1 for r in runs if r["rejoined"])
        errors = sum(sum(len(v) for v in r["errors"].values()) for r in runs)
        cpu = (f"{_pct(_med(r['cpu'] for r in runs))} "
               f"({_num(_med(r['load'][1] for r in runs), '.2f')})")
        lines.append(f"| {profile} | {len(runs)}{failed} | {_recv(runs, 'b_from_m', True)} | "
                     f"{_recv(runs, 'b_from_a', True)} | {total} | {link} | {_recv(runs, 'a_from_m')} | {uplink} | "
                     f"{pub} | {rejoins} / {errors} | {cpu} |")
    return lines


def busy_ratio(rows) -> str:
    """The busy profile's publishers against the clean profile's: what they sent (kbit/s)."""
    by = {profile: runs for profile, runs, _ in rows if runs}
    if "busy" not in by or "clean" not in by:
        return ""
    parts = []
    for who in ("m_pub", "b_pub"):
        clean, busy = _med(r[who]["kbps_out"] for r in by["clean"]), _med(r[who]["kbps_out"] for r in by["busy"])
        if clean and busy is not None:
            parts.append(f"{'the mediator' if who == 'm_pub' else 'B'} sends {busy:.0f} kbit/s, "
                         f"{100 * busy / clean:.0f} % of its {clean:.0f} in the clean profile")
    cpu = _med(r["cpu"] for r in by["busy"])
    return (f"busy host (CPU {100 * cpu:.0f} %): " if cpu is not None else "busy host: ") + "; ".join(parts)


def busy_warnings(mode: str, rows) -> list[str]:
    """The clean profile should show the publisher's frame rate at every viewer; if not, the host
    (not the link) is the bottleneck and the other rows say little."""
    out = []
    for profile, runs, _failures in rows:
        if profile != "clean" or not runs:
            continue
        capture = _med(r["m_pub"]["capture_fps"] for r in runs)
        sent = _med(r["m_pub"]["sent_fps"] for r in runs)
        seen = {k: _med(r[k]["fps"] for r in runs) for k in ("b_from_m", "a_from_m")}
        cpu = _med(r["cpu"] for r in runs)
        if capture and sent is not None and sent < 0.8 * capture:
            out.append(f"WARNING (adaptation {mode}): on the clean link the mediator encodes {sent:.1f} fps of "
                       f"{capture:.1f} captured - the host is too busy, figures are not representative")
        for k, fps in seen.items():
            if sent and fps is not None and fps < 0.8 * sent:
                out.append(f"WARNING (adaptation {mode}): on the clean link {k.replace('_from_', ' <- ')} decodes "
                           f"{fps:.1f} fps of the {sent:.1f} the mediator sends - the host is too busy, "
                           "figures are not representative")
        if cpu is not None and cpu > 0.85:
            out.append(f"WARNING (adaptation {mode}): host CPU {100 * cpu:.0f} % during the clean window")
    return out


# ---------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=40, help="the measured window per profile")
    ap.add_argument("--settle", type=float, default=5, help="seconds between applying the profile and the window")
    ap.add_argument("--only", nargs="+", choices=list(PROFILES), metavar="PROFILE",
                    help=f"profiles to run (default: all of {', '.join(PROFILES)})")
    ap.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                    help="also run every profile with ADAPTATION=off on the server")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--keep", type=Path, help="keep the servers' logs and lab files in this folder")
    args = ap.parse_args()
    if args.seconds < OUTAGE + 2 and (not args.only or "outage6" in args.only):
        print(f"note: a window of {args.seconds:g} s barely holds the {OUTAGE:g} s outage", flush=True)
    reason = netlab.available()
    if reason:
        print(f"cannot build the network lab: {reason}", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    os.environ.pop("ADAPTATION", None)  # "on" is the server's default, whatever this shell says
    modes = ["on", "off"] if args.baseline else ["on"]
    profiles = [p for p in PROFILES if not args.only or p in args.only]
    results: dict[str, list] = {mode: [] for mode in modes}
    load_before = os.getloadavg()
    started = time.monotonic()
    with (contextlib.nullcontext(str(args.keep)) if args.keep else tempfile.TemporaryDirectory()) as tmp:
        for profile in profiles:
            for mode in modes:
                runs, failures = [], []
                root = Path(tmp) / f"{profile}-{mode}"
                try:
                    with lab_deployment(root, participants=3,
                                        prepare=lambda lab, parts, mode=mode: (dict(MODES[mode]), [])) as d, \
                            sync_playwright() as pw:
                        for i in range(args.runs):
                            what = f"{profile} (adaptation {mode}) run {i + 1}"
                            try:
                                with Watchdog(180 + args.settle + args.seconds, [ns for ns, _ in d["parts"]], what):
                                    r = one_run(pw, d, f"弱网测试 {profile} {mode} {i}", profile, args.seconds,
                                                args.settle)
                                runs.append(r)
                                print(what, json.dumps(r, ensure_ascii=False, default=str), flush=True)
                            except Exception as exc:  # noqa: BLE001 - reported; the other runs go on
                                failures.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                                print(f"{what} FAILED: {failures[-1]}", flush=True)
                                traceback.print_exc(limit=3)
                except Exception as exc:  # noqa: BLE001 - the lab or server itself failed
                    failures.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                    print(f"{profile} (adaptation {mode}) FAILED to set up: {failures[-1]}", flush=True)
                    traceback.print_exc(limit=3)
                results[mode].append((profile, runs, failures))
    load_after = os.getloadavg()
    mine = f"ml{os.getpid() % 100000}x"  # netlab.Lab's tag: other processes' labs are theirs
    left = [name for name in netlab.leftovers() if name.startswith(mine)]
    if left:
        print(f"WARNING: lab namespaces left behind: {left}", flush=True)

    tables, warnings = [], []
    for mode in modes:
        title = ("adaptation on (the server's default)" if mode == "on"
                 else "adaptation off (server started with ADAPTATION=off: the baseline)")
        table = "\n".join(table_rows(results[mode]))
        notes = []
        for profile, runs, failures in results[mode]:
            notes += [f"{profile}: failed run: {f[:200]}" for f in failures]
            for r in runs:
                notes += [f"{profile}: {who}'s page logged errors {', '.join(map(str, errs))}"
                          for who, errs in r["errors"].items()]
                notes += [f"{profile}: {who}'s page rejoined"
                          + (" during the window" if who in r["rejoined_in_window"] else " before the window")
                          + (" as a new participant (its figures cover only its old id)"
                             if who in r["new_id_in_window"] else "")
                          for who in r["rejoined"]]
        table += "".join(f"\n\n- {note}" if i == 0 else f"\n- {note}" for i, note in enumerate(notes))
        tables.append(f"{title}:\n\n{table}")
        warnings += busy_warnings(mode, results[mode])
        ratio = busy_ratio(results[mode])
        if ratio:
            tables[-1] += f"\n\n- {ratio}"
    minutes = (time.monotonic() - started) / 60
    print()
    print("\n\n".join(tables))
    for w in warnings:
        print(w)
    print(f"load average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f} on "
          f"{os.cpu_count()} cores; {minutes:.1f} min")

    profile_text = ("clean; loss3 / loss10: 3 % / 10 % random loss and 20 ms each way; rate400 / rate150: a "
                    f"400 / 150 kbit/s bottleneck with a {QUEUE // 1000} KB tail-drop queue and 20 ms each way; "
                    f"rtt600: 300 ms each way; outage6: the link down for {OUTAGE:g} s in the middle of the window; "
                    "busy: clean links with a process spinning on the host's CPU during settle and window")
    warning_text = "".join(f"\n\n**{w}**" for w in warnings)
    method = (
        "What it measures: the network lab of the test suite (a network namespace per participant and one for "
        "the server, joined by a userspace link emulator). A mediator (desktop-sized Chromium) and two parties "
        "A and B (phone-sized), all real headless Chromium with a fake camera and microphone, join one room "
        "(the parties admitted from the lobby). The mediator's and A's links are clean; B's link gets the "
        f"profile in both directions ({profile_text}). Once media flows every way the profile is applied, left "
        f"to settle {args.settle:g} s, then a {args.seconds:g} s window is measured from getStats deltas on "
        "every page: video fps (framesDecoded), the share of the window frozen (inbound-rtp "
        "totalFreezesDuration, plus a freeze still open at either edge of the window, found from framesDecoded "
        f"sampled every {SAMPLE:g} s), the resolution at the window's end and audio concealment "
        "(concealedSamples / totalSamplesReceived) per publisher; \"towards B\" is the link emulator's count "
        "of IP bytes the server offered to B's link and the link delivered; the mediator's publisher column "
        "counts the keyframes it encoded and the PLIs it received in the window, and its sent frame rate. "
        f"Medians of {args.runs} run(s) per profile; each mode (the server's adaptation on, and off with "
        "`ADAPTATION=off`) on a server and lab of its own, the two interleaved profile by profile. Host CPU is "
        "/proc/stat over all cores during the window, the load average at the window's end in brackets. Load "
        f"average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f} on {os.cpu_count()} cores.")
    section = (f"{HEADING}: a constrained party beside a healthy one (`bench/network.py`)\n\n"
               + textwrap.fill(method, 100) + warning_text + "\n\n" + "\n\n".join(tables) + "\n")
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", section, HEADING)
        print("wrote docs/benchmarks.md")
    failed = sum(len(f) for mode in modes for _p, _r, f in results[mode])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
