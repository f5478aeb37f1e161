"""The live room in the network lab (tests/support/netlab.py): the demo server inside the lab's
server namespace, each browser inside a participant namespace on an emulated link."""
from __future__ import annotations

import contextlib
import os
import time

import pytest

from tests.conftest import IN_CI
from tests.support import netlab
from tests.support.servers import ServerProcess, clean_env

from .conftest import CHROMIUM, CHROMIUM_ARGS, Server
from .room_helpers import wait_js

# The lab's web server listens on 443 (plain HTTP inside the lab), so a party on a network that
# lets only TCP 443 out still reaches it.
PORT = 443

SELECTED_PAIR_JS = """async (which) => {
  const pc = window.mediationRoom && window.mediationRoom[which || 'subPc'];
  if (!pc) return null;
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach(r => { if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId); });
  if (!pair) stats.forEach(r => { if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r; });
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId);
  return {type: local && local.candidateType, protocol: local && (local.relayProtocol || local.protocol)};
}"""

# Video frames decoded on the subscribe connection, per publisher (the server's track table maps mids).
DECODED_BY_JS = """async () => {
  const R = window.mediationRoom; if (!R || !R.subPc) return {};
  const byMid = {}; (R.trackTable || []).forEach(t => { byMid[t.mid] = t.participant_id; });
  const out = {};
  (await R.subPc.getStats()).forEach(r => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') {
      const pid = byMid[r.mid] || '?'; out[pid] = (out[pid] || 0) + (r.framesDecoded || 0); } });
  return out;
}"""


def require_lab(*extra: tuple[bool, str]) -> None:
    reason = netlab.available()
    checks = [(bool(reason), reason or ""), (not os.path.exists(CHROMIUM), f"{CHROMIUM} is not installed"), *extra]
    for missing, what in checks:
        if missing:
            if IN_CI:
                pytest.fail(what)
            pytest.skip(what)


def start_server(lab: netlab.Lab, data, host: str = "0.0.0.0", **env_extra: str) -> tuple[ServerProcess, Server]:
    """`mediation serve --demo` inside the server namespace, reached through a loopback forwarder."""
    data.mkdir(parents=True, exist_ok=True)
    first = host if host != "0.0.0.0" else (lab.links[0].server_addr if lab.links else "127.0.0.1")
    env = clean_env(MEDIATION_DATA_DIR=str(data), IDENTITY_CHECK="off", PUBLIC_URL=f"http://{first}:{PORT}",
                    **env_extra)
    proc = ServerProcess(env, data / "server.log", port=PORT, args=("--demo", "--host", host),
                         ready_path="/api/v1/institutions", prefix=("ip", "netns", "exec", lab.server.name))
    proc.spawn()
    probe_host = "127.0.0.1" if host == "0.0.0.0" else host
    proc.probe_url = f"http://127.0.0.1:{lab.forward_in_thread(lab.server, probe_host, PORT)}"
    proc.wait_ready()
    return proc, Server(url=proc.url, data_dir=data, log_path=proc.log_path)


@contextlib.contextmanager
def lab_deployment(root, *, participants: int = 2, prepare=None):
    """A lab with `participants` participant namespaces and the demo server in the server
    namespace. `prepare(lab, parts)` may set up more (firewalls, coturn) before the server
    starts and returns (extra server environment, things to stop afterwards[, the one address
    the web server listens on: every participant then reaches that one])."""
    lab = netlab.Lab(root / "lab")
    stops = []
    try:
        parts = [lab.participant() for _ in range(participants)]
        env, stops, *host = prepare(lab, parts) if prepare else ({}, [])
        proc, srv = start_server(lab, root / "server", *host, **env)
        stops = [proc, *stops]
        yield {"lab": lab, "server": srv, "parts": parts, "host": host[0] if host else None}
    finally:
        for thing in stops:
            thing.stop()
        lab.close()


def browser_in(pw, ns: netlab.Namespace, link: netlab.EmulatedLink, host: str | None = None,
               extra_args: tuple[str, ...] = ()):
    """Chromium inside a participant namespace; returns (browser, the server's origin as seen from
    there: its link's server address, or `host`, reached over the same link)."""
    if host is not None and host != link.server_addr:
        netlab._ip("-n", ns.name, "route", "replace", host, "dev", link.tun_p)
    origin = f"http://{host or link.server_addr}:{PORT}"
    args = CHROMIUM_ARGS + ["--autoplay-policy=no-user-gesture-required",
                            f"--unsafely-treat-insecure-origin-as-secure={origin}",
                            "--disable-features=WebRtcHideLocalIpsWithMdns", *extra_args]
    return pw.chromium.launch(executable_path=str(ns.wrapper(CHROMIUM)), headless=True, args=args), origin


def page_in(browser, viewport):
    mobile = viewport["width"] < 600
    ctx = browser.new_context(viewport=viewport, is_mobile=mobile, has_touch=mobile)
    ctx.grant_permissions(["camera", "microphone"])
    ctx.set_default_timeout(20_000)
    return ctx.new_page()


def enter(page) -> str:
    wait_js(page, "document.querySelector('#self-video').videoWidth > 0", "own preview", 20)
    page.click("[data-testid=enter]")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        screen = page.evaluate("() => window.mediationRoom && window.mediationRoom.screen")
        if screen not in ("precheck", "connecting", "step"):
            return screen
        if screen == "step" and page.locator("#step-yes").is_visible():
            page.click("#step-yes")
        time.sleep(0.1)
    raise AssertionError("the page did not get past the join steps")


def admit(mediator, party) -> str:
    pid = wait_js(party, "window.mediationRoom.me && window.mediationRoom.me.id", "party id")
    mediator.click(f"[data-testid=lobby-list] [data-testid=admit][data-pid='{pid}']")
    wait_js(party, "window.mediationRoom.screen === 'room'", "party admitted", 20)
    return pid


def until(check, timeout: float, interval: float = 0.1):
    """Poll `check` until it returns something true (returned) or `timeout` seconds pass (None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    return None


def room_state(page, expr: str):
    """`expr` evaluated on the page's last room.state (as `s`), or None before the first."""
    return page.evaluate(f"(() => {{ const s = window.mediationRoom.state; return s ? ({expr}) : null; }})()")


def decoded_from(page, pid: str) -> int:
    return page.evaluate(f"({DECODED_BY_JS})()").get(pid, 0)


# Which subscribe connection the counts come from: coming back may make a new one, whose
# counters start at 0 again.
_SUB_TAG_JS = "(() => { const R = window.mediationRoom; if (!R || !R.subPc) return null; " \
              "return R.subPc.__labTag || (R.subPc.__labTag = Math.random().toString(36).slice(2)); })()"


def decode_mark(page, pid: str) -> tuple:
    """Where pid's decoded frames stand now, on which subscribe connection (for decoded_past)."""
    return page.evaluate(_SUB_TAG_JS), decoded_from(page, pid)


def decoded_past(page, pid: str, mark: tuple, by: int = 5) -> bool:
    """More than `by` frames of pid decoded since `mark`, on the same or a newer connection."""
    tag, count = page.evaluate(_SUB_TAG_JS), decoded_from(page, pid)
    return count > (mark[1] if tag == mark[0] else 0) + by
