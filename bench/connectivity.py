"""Connectivity in the network lab: real Chromium parties on links of their own.

For each profile of the party's link, over several runs:
  direct        join -> first decoded frame (the party decodes the mediator)
  udp_blocked   the same with all UDP dropped by the party's firewall: TURN over TCP (coturn)
  only_tcp_443  a network that lets only TCP to port 443 out: the site and TURN/TCP both on 443
  only_turns_443 the same with the relay speaking TLS on 443 (turns:, a self-signed certificate
                the party's Chromium accepts by its public key)
  outage_6s     the link down for 6 s: time from the link's return until the party decodes the
                mediator again, and until the mediator decodes the party again (no reload)
  address_change the party's address changes under its page (Wi-Fi -> mobile data): time from
                the change until both decode each other again (no reload)
  rejoin        the baseline for an outage: what a page reload costs (reload -> first frame),
                which is what a full rejoin costs a party
  rtt_600ms     (once, --long-minutes, 10 by default) a link with a 600 ms round trip: the
                connections must stay up; frames decoded in the last minute
  direct_firefox, udp_blocked_firefox
                the same as direct and udp_blocked with the party in Firefox ESR (headless, fake
                media, inside the party's namespace; the mediator stays Chromium)
For direct, udp_blocked, only_tcp_443, only_turns_443 and the Firefox profiles the party's video frame rate and
audio concealment are measured over the 10 s after its first frame.

Prints a table and writes it to docs/benchmarks.md ("## Connectivity"). Needs root (network
namespaces), coturn, Chromium and, for the Firefox profiles, firefox-esr and pulseaudio; run
with nothing else on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.scale import write_section  # noqa: E402
from tests.browser.conftest import DESKTOP, PHONE  # noqa: E402
from tests.browser.lab_helpers import (  # noqa: E402
    PORT, admit, browser_in, decode_mark, decoded_from, decoded_past, enter, lab_deployment, page_in)
from tests.browser.room_helpers import open_room, wait_decoding, wait_js  # noqa: E402
from tests.browser.test_firefox_room import firefox_pass_steps  # noqa: E402
from tests.browser.test_tls_proxy import make_certificate  # noqa: E402
from tests.support import netlab  # noqa: E402
from tests.support.coturn import Coturn  # noqa: E402
from tests.support.firefox import FIREFOX, Firefox  # noqa: E402

SECRET = "bench-turn-secret-" + "b" * 24
HEADING = "## Connectivity"

# The party's reception over a window: video frames decoded, audio samples concealed / received.
RECEPTION_JS = """async () => {
  const R = window.mediationRoom; if (!R || !R.subPc) return null;
  let frames = 0, concealed = 0, samples = 0;
  (await R.subPc.getStats()).forEach(r => {
    if (r.type !== 'inbound-rtp') return;
    if (r.kind === 'video') frames += r.framesDecoded || 0;
    if (r.kind === 'audio') { concealed += r.concealedSamples || 0; samples += r.totalSamplesReceived || 0; }
  });
  return [frames, concealed, samples];
}"""
# What a page knows when video did not come back: what the server says it forwards to it, its
# connections, and its inbound video counters.
DIAGNOSIS_JS = """async (pid) => {
  const R = window.mediationRoom, out = {video: R.state && R.state.video, quality: null, states: null, inbound: []};
  const me = R.state && R.state.participants.find(p => p.id === R.me.id); out.quality = me && me.quality;
  out.states = [R.pubPc && R.pubPc.connectionState, R.subPc && R.subPc.connectionState];
  if (R.subPc) (await R.subPc.getStats()).forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'video')
    out.inbound.push({mid: r.mid, packets: r.packetsReceived, lost: r.packetsLost, frames: r.framesDecoded,
                      keyframes: r.keyFramesDecoded, plis: r.pliCount, nacks: r.nackCount, firs: r.firCount}); });
  out.errors = R.errors; return out;
}"""
STATES_JS = "[window.mediationRoom.pubPc && window.mediationRoom.pubPc.connectionState, " \
            "window.mediationRoom.subPc && window.mediationRoom.subPc.connectionState]"


def _both(first, second, timeout: float) -> tuple[float | None, float | None]:
    """Seconds until each check first holds, both timed from now."""
    t0, got = time.monotonic(), [None, None]
    while time.monotonic() - t0 < timeout and None in got:
        for i, check in enumerate((first, second)):
            if got[i] is None and check():
                got[i] = time.monotonic() - t0
        time.sleep(0.05)
    return got[0], got[1]


def firefox_in(lab: netlab.Lab, ns: netlab.Namespace, link: netlab.EmulatedLink, host: str | None = None):
    """Firefox ESR (headless, fake media, phone-sized) inside a participant namespace, its BiDi
    listener (on the namespace's loopback) reached through a forwarder from this process;
    returns (the started Firefox, the server's origin as seen from there)."""
    if host is not None and host != link.server_addr:
        netlab._ip("-n", ns.name, "route", "replace", host, "dev", link.tun_p)
    name = host or link.server_addr
    prefs = {"dom.securecontext.allowlist": name,   # plain HTTP in the lab: a secure context there
             "media.devices.insecure.enabled": True, "media.getusermedia.insecure.enabled": True}

    def forwarded(url: str) -> str:
        return f"ws://127.0.0.1:{lab.forward_in_thread(ns, '127.0.0.1', int(url.rsplit(':', 1)[1]))}"

    ff = Firefox(str(ns.wrapper(FIREFOX)), prefs=prefs, viewport=PHONE, timeout=20,
                 log_path=lab.workdir / f"{ns.name}-firefox.log", bidi_url=forwarded)
    return ff.start(timeout=60), f"http://{name}:{PORT}"


def enter_firefox(ff: Firefox) -> None:
    ff.wait_js("document.querySelector('#self-video').videoWidth > 0", "Firefox's own preview", 20)
    ff.click("[data-testid=enter]")
    firefox_pass_steps(ff, timeout=30)


def one_run(pw, d, title: str, profile: str, long_minutes: float = 10) -> dict:
    links = open_room(d["server"], title)
    (m_ns, m_link), (p_ns, p_link) = d["parts"]
    in_firefox = profile.endswith("_firefox")
    profile = profile.removesuffix("_firefox")
    m_browser, m_origin = browser_in(pw, m_ns, m_link, d["host"])
    p_browser = None
    party_args = tuple(d.get("party_args", ()))
    out: dict = {}
    try:
        if in_firefox:
            p_browser, p_origin = firefox_in(d["lab"], p_ns, p_link, d["host"])
            party = p_browser
        else:
            p_browser, p_origin = browser_in(pw, p_ns, p_link, d["host"], party_args)
            party = page_in(p_browser, PHONE)
        mediator = page_in(m_browser, DESKTOP)
        mediator.goto(f"{m_origin}/join/{links.mediator_token}")
        enter(mediator)
        m_id = wait_js(mediator, "window.mediationRoom.me && window.mediationRoom.me.id", "mediator id")
        party.goto(f"{p_origin}/join/{links.party_tokens[0]}")
        if in_firefox:
            enter_firefox(party)
        else:
            enter(party)
        p_id = admit(mediator, party)
        t_admit = time.monotonic()
        wait_decoding(party, "party decodes", timeout=60)
        out["first_frame"] = time.monotonic() - t_admit
        wait_decoding(mediator, "mediator decodes", timeout=60)
        if profile in ("direct", "udp_blocked", "only_tcp_443", "only_turns_443"):
            f0, c0, n0 = party.evaluate(RECEPTION_JS)
            time.sleep(10)
            f1, c1, n1 = party.evaluate(RECEPTION_JS)
            out["fps"] = (f1 - f0) / 10
            out["concealed"] = (c1 - c0) / max(n1 - n0, 1)
        if profile == "address_change":
            base_p, base_m = decode_mark(party, m_id), decode_mark(mediator, p_id)
            joins = party.evaluate("window.__samePage = true, window.mediationRoom.joins")
            p_link.change_address()
            out["party_back"], out["mediator_back"] = _both(lambda: decoded_past(party, m_id, base_p),
                                                            lambda: decoded_past(mediator, p_id, base_m), 40)
            out["reloaded"] = party.evaluate("window.__samePage !== true")
            out["resumed_joins"] = party.evaluate("window.mediationRoom.joins") - joins
        if profile == "rtt_600ms":
            p_link.set(both={"delay": 0.3})
            t0, drops, minute = time.monotonic(), 0, None
            while time.monotonic() - t0 < long_minutes * 60:
                time.sleep(5)
                if party.evaluate(STATES_JS) != ["connected", "connected"]:
                    drops += 1
                if minute is None and time.monotonic() - t0 >= long_minutes * 60 - 60:
                    minute = decoded_from(party, m_id), decoded_from(mediator, p_id)
            out["minutes"] = (time.monotonic() - t0) / 60
            out["not_connected_checks"] = drops
            out["last_minute_frames"] = (decoded_from(party, m_id) - minute[0], decoded_from(mediator, p_id) - minute[1])
            out["rejoined"] = party.evaluate("window.mediationRoom.joins") != 1
        if profile == "outage_6s":
            joins = party.evaluate("window.__samePage = true, window.mediationRoom.joins")
            p_link.outage(True)
            time.sleep(6)
            base_p, base_m = decode_mark(party, m_id), decode_mark(mediator, p_id)
            p_link.outage(False)
            out["party_back"], out["mediator_back"] = _both(lambda: decoded_past(party, m_id, base_p),
                                                            lambda: decoded_past(mediator, p_id, base_m), 30)
            out["reloaded"] = party.evaluate("window.__samePage !== true")
            out["resumed_joins"] = party.evaluate("window.mediationRoom.joins") - joins
            if out["party_back"] is None or out["mediator_back"] is None:
                out["diagnosis"] = party.evaluate(DIAGNOSIS_JS, m_id)
                out["diagnosis"]["link_at_mediator"] = mediator.evaluate(
                    f"(window.mediationRoom.state.participants.find(p => p.id === '{p_id}') || {{}}).link")
        if profile == "rejoin":
            t0 = time.monotonic()
            party.reload()  # the page enters again by itself after a reload
            wait_js(party, "window.mediationRoom && window.mediationRoom.screen === 'room'", "back in the room", 60)
            wait_decoding(party, "party decodes after reload", timeout=60)
            out["party_back"] = time.monotonic() - t0
        if in_firefox and (party.page_errors or party.server_errors):
            out["firefox_errors"] = party.page_errors + party.server_errors
    finally:
        if p_browser is not None:
            p_browser.close()
        m_browser.close()
    return out


def _fmt(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "–"
    return f"{statistics.median(got):.1f} / {max(got):.1f}" + (f" ({len(values) - len(got)} never)" if len(got) < len(values) else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--long-minutes", type=float, default=10, help="how long the 600 ms round-trip link is held")
    ap.add_argument("--only", nargs="*", help="profiles to run (default: all); the table keeps the other "
                    "profiles' rows from the last run of each (--results)")
    ap.add_argument("--results", type=Path, default=Path.home() / ".cache" / "mediation-bench" / "connectivity.json",
                    help="where each profile's latest results are kept between runs")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        profiles = ("direct", "udp_blocked", "direct_firefox", "udp_blocked_firefox", "only_tcp_443", "only_turns_443", "outage_6s",
                    "address_change", "rejoin", "rtt_600ms")
        for profile in [p for p in profiles if not args.only or p in args.only]:
            root = Path(tmp) / profile

            def prepare(lab, parts, profile=profile.removesuffix("_firefox"), root=root):
                party_ns, party_link = parts[1]
                if profile == "udp_blocked":
                    party_ns.block_udp()
                    turn = Coturn(root / "coturn", SECRET, listen_ip=party_link.server_addr,
                                  netns=lab.server.name).start()
                    return {"TURN_SECRET": SECRET, "TURN_URLS": f"turn:{turn.listen_ip}:{turn.port}?transport=tcp"}, [turn]
                if profile in ("only_tcp_443", "only_turns_443"):
                    party_ns.only_tcp_443()
                    relay_ip = party_link.add_server_address()
                    tls, scheme = None, "turn"
                    if profile == "only_turns_443":
                        (root / "tls").mkdir(parents=True)
                        party_args.append(f"--ignore-certificate-errors-spki-list="
                                          f"{make_certificate(root / 'tls', (relay_ip,))}")
                        tls, scheme = (root / "tls" / "cert.pem", root / "tls" / "key.pem"), "turns"
                    turn = Coturn(root / "coturn", SECRET, listen_ip=relay_ip, netns=lab.server.name, port=443,
                                  tls=tls).start()
                    return ({"TURN_SECRET": SECRET, "TURN_URLS": f"{scheme}:{turn.listen_ip}:443?transport=tcp"},
                            [turn], party_link.server_addr)
                return {}, []

            results = []
            party_args: list[str] = []
            with lab_deployment(root, prepare=prepare) as d, sync_playwright() as pw:
                d["party_args"] = party_args
                for i in range(1 if profile == "rtt_600ms" else args.runs):
                    results.append(one_run(pw, d, f"连通性测试 {profile} {i}", profile, args.long_minutes))
                    print(profile, i, results[-1], flush=True)
            rows.append((profile, results))
    load_after = os.getloadavg()
    # Each profile's latest results, with the load they were measured at: a run of some profiles
    # (--only) is tabled together with the others' latest runs.
    kept = json.loads(args.results.read_text()) if args.results.exists() else {}
    loads = f"{load_before[0]:.2f} / {load_after[0]:.2f}"
    for profile, results in rows:
        kept[profile] = {"results": results, "load": loads, "runs": args.runs, "at": time.strftime("%Y-%m-%d %H:%M")}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(kept, indent=1))
    ran = {profile for profile, _ in rows}
    rows = [(profile, kept[profile]["results"]) for profile in profiles if profile in kept]
    earlier = sorted({f"{kept[p]['load']} ({p}, {kept[p]['at']})" for p, _ in rows if p not in ran})

    lines = ["| party's link | runs | admitted → first decoded frame, p50 / max (s) | video fps / audio concealed "
             "(10 s after it) | event → party decodes again (s) | event → others decode the party again (s) | "
             "how it came back |",
             "|---|---|---|---|---|---|---|"]
    how = {"outage_6s": "same connections", "address_change": "resumed: new connections, same producers",
           "rejoin": "reload (baseline)"}
    long_note = ""
    for profile, results in rows:
        back = _fmt([r.get("party_back") for r in results]) if profile in ("outage_6s", "address_change", "rejoin") else "–"
        others = _fmt([r.get("mediator_back") for r in results]) if profile in ("outage_6s", "address_change") else "–"
        quality = "–"
        if results and "fps" in results[0]:
            quality = (f"{statistics.median(r['fps'] for r in results):.1f} fps / "
                       f"{100 * max(r['concealed'] for r in results):.2f} % (worst run)")
        came_back = how.get(profile, "–")
        if profile in ("outage_6s", "address_change"):
            came_back += (f"; page reloaded {sum(1 for r in results if r.get('reloaded'))} of {len(results)}, "
                          f"joined again (resumed) {sum(r.get('resumed_joins', 0) for r in results)} times in all")
        if profile == "rtt_600ms":
            r = results[0]
            came_back = (f"stayed {r['minutes']:.1f} min, not connected in {r['not_connected_checks']} of "
                         f"{int(r['minutes'] * 12)} checks, page rejoined: {'yes' if r['rejoined'] else 'no'}")
            long_note = (f" In the last minute on the 600 ms link the party decoded {r['last_minute_frames'][0]} "
                         f"frames of the mediator, the mediator {r['last_minute_frames'][1]} of the party.")
        lines.append(f"| {profile} | {len(results)} | {_fmt([r['first_frame'] for r in results])} | {quality} | "
                     f"{back} | {others} | {came_back} |")
    table = "\n".join(lines)
    print(table)
    section = f"""{HEADING}: real Chromium parties on links of their own (`bench/connectivity.py`)

What it measures: the network lab of the test suite (a network namespace per participant and
one for the server, joined by a userspace link emulator; coturn in the server's namespace).
A mediator on a clean link and a party (phone-sized Chromium, fake camera) whose link has the
profile; runs of {args.runs}. `udp_blocked`: the party's firewall drops all UDP, media goes
through TURN over TCP with the credentials of its join ack. `only_tcp_443`: only TCP to port
443 leaves the party's network; the site and coturn (TURN over TCP) both listen on 443;
`only_turns_443` the same with coturn speaking TLS there (`turns:`). `outage_6s`: the party's link is
down for 6 s after media flows; times from the link's return. `address_change`: the party's
address changes under its page (as from Wi-Fi to mobile data); times from the change.
`direct_firefox`, `udp_blocked_firefox`: as `direct` and `udp_blocked`, the party in Firefox ESR
(headless, fake media, same namespace and link), the mediator in Chromium.
`rejoin`: the baseline, a page reload (what a full rejoin costs the party): reload → first
decoded frame. `rtt_600ms`: once, the party's link gets 300 ms each way for
{args.long_minutes:g} minutes; the page's two connections are checked every 5 s.{long_note}
Load average (1 min) before / after: {loads} on 2 cores{"; rows from earlier runs: " + ", ".join(earlier) if earlier else ""}.

{table}
"""
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", section, HEADING)
        print("wrote docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
