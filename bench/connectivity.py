"""Connectivity in the network lab: real Chromium parties on links of their own.

For each profile of the party's link, over several runs:
  direct        join -> first decoded frame (the party decodes the mediator)
  udp_blocked   the same with all UDP dropped by the party's firewall: TURN over TCP (coturn)
  only_tcp_443  a network that lets only TCP to port 443 out: the site and TURN/TCP both on 443
  outage_6s     the link down for 6 s: time from the link's return until the party decodes the
                mediator again, and until the mediator decodes the party again (no reload)
  rejoin        the baseline for an outage: what a page reload costs (reload -> first frame),
                which is what a full rejoin costs a party

Prints a table and writes it to docs/benchmarks.md ("## Connectivity"). Needs root (network
namespaces), coturn and Chromium; run with nothing else on the machine.
"""
from __future__ import annotations

import argparse
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
    admit, browser_in, decoded_from, enter, lab_deployment, page_in)
from tests.browser.room_helpers import open_room, wait_decoding, wait_js  # noqa: E402
from tests.support.coturn import Coturn  # noqa: E402

SECRET = "bench-turn-secret-" + "b" * 24
HEADING = "## Connectivity"


def _until(check, timeout: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def one_run(pw, d, title: str, profile: str) -> dict:
    links = open_room(d["server"], title)
    (m_ns, m_link), (p_ns, p_link) = d["parts"]
    m_browser, m_origin = browser_in(pw, m_ns, m_link, d["host"])
    p_browser, p_origin = browser_in(pw, p_ns, p_link, d["host"])
    out: dict = {}
    try:
        mediator, party = page_in(m_browser, DESKTOP), page_in(p_browser, PHONE)
        mediator.goto(f"{m_origin}/join/{links.mediator_token}")
        enter(mediator)
        m_id = wait_js(mediator, "window.mediationRoom.me && window.mediationRoom.me.id", "mediator id")
        party.goto(f"{p_origin}/join/{links.party_tokens[0]}")
        enter(party)
        p_id = admit(mediator, party)
        t_admit = time.monotonic()
        wait_decoding(party, "party decodes", timeout=60)
        out["first_frame"] = time.monotonic() - t_admit
        wait_decoding(mediator, "mediator decodes", timeout=60)
        if profile == "outage_6s":
            p_link.outage(True)
            time.sleep(6)
            base_p, base_m = decoded_from(party, m_id), decoded_from(mediator, p_id)
            p_link.outage(False)
            out["party_back"] = _until(lambda: decoded_from(party, m_id) > base_p + 5, 30)
            out["mediator_back"] = _until(lambda: decoded_from(mediator, p_id) > base_m + 5, 30)
            out["rejoined"] = party.evaluate("window.mediationRoom.joins") != 1
        if profile == "rejoin":
            t0 = time.monotonic()
            party.reload()  # the page enters again by itself after a reload
            wait_js(party, "window.mediationRoom && window.mediationRoom.screen === 'room'", "back in the room", 60)
            wait_decoding(party, "party decodes after reload", timeout=60)
            out["party_back"] = time.monotonic() - t0
    finally:
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
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for profile in ("direct", "udp_blocked", "only_tcp_443", "outage_6s", "rejoin"):
            root = Path(tmp) / profile

            def prepare(lab, parts, profile=profile, root=root):
                party_ns, party_link = parts[1]
                if profile == "udp_blocked":
                    party_ns.block_udp()
                    turn = Coturn(root / "coturn", SECRET, listen_ip=party_link.server_addr,
                                  netns=lab.server.name).start()
                    return {"TURN_SECRET": SECRET, "TURN_URLS": f"turn:{turn.listen_ip}:{turn.port}?transport=tcp"}, [turn]
                if profile == "only_tcp_443":
                    party_ns.only_tcp_443()
                    turn = Coturn(root / "coturn", SECRET, listen_ip=party_link.add_server_address(),
                                  netns=lab.server.name, port=443).start()
                    return ({"TURN_SECRET": SECRET, "TURN_URLS": f"turn:{turn.listen_ip}:443?transport=tcp"}, [turn],
                            party_link.server_addr)
                return {}, []

            results = []
            with lab_deployment(root, prepare=prepare) as d, sync_playwright() as pw:
                for i in range(args.runs):
                    results.append(one_run(pw, d, f"连通性测试 {profile} {i}", profile))
                    print(profile, i, results[-1], flush=True)
            rows.append((profile, results))
    load_after = os.getloadavg()

    lines = ["| party's link | runs | admitted → first decoded frame, p50 / max (s) | link back → party decodes again "
             "(s) | link back → others decode the party again (s) | page rejoined |",
             "|---|---|---|---|---|---|"]
    for profile, results in rows:
        back = "–" if profile in ("direct", "udp_blocked") else _fmt([r.get("party_back") for r in results])
        others = _fmt([r.get("mediator_back") for r in results]) if profile == "outage_6s" else "–"
        rejoined = (f"{sum(1 for r in results if r.get('rejoined'))} of {len(results)}" if profile == "outage_6s"
                    else ("reload (baseline)" if profile == "rejoin" else "–"))
        lines.append(f"| {profile} | {len(results)} | {_fmt([r['first_frame'] for r in results])} | {back} | "
                     f"{others} | {rejoined} |")
    table = "\n".join(lines)
    print(table)
    section = f"""{HEADING}: real Chromium parties on links of their own (`bench/connectivity.py`)

What it measures: the network lab of the test suite (a network namespace per participant and
one for the server, joined by a userspace link emulator; coturn in the server's namespace).
A mediator on a clean link and a party (phone-sized Chromium, fake camera) whose link has the
profile; runs of {args.runs}. `udp_blocked`: the party's firewall drops all UDP, media goes
through TURN over TCP with the credentials of its join ack. `only_tcp_443`: only TCP to port
443 leaves the party's network; the site and coturn (TURN over TCP) both listen on 443. `outage_6s`: the party's link is
down for 6 s after media flows; times from the link's return. `rejoin`: the baseline, a page
reload (what a full rejoin costs the party): reload → first decoded frame.
Load average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f} on 2 cores.

{table}
"""
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", section, HEADING)
        print("wrote docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
