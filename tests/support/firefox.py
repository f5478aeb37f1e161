"""Debian's Firefox ESR, headless, driven over WebDriver BiDi (its built-in Remote Agent).

No driver and no downloaded browser build: `firefox-esr --headless --remote-debugging-port 0
--profile DIR` listens on a free loopback port that it prints (ws://127.0.0.1:P), and a
websocket to /session (aiohttp, already a dependency) opens a BiDi session. The profile is a temp folder whose user.js turns on fake
camera and microphone without a permission prompt, lets media autoplay, and switches off
first-run pages, telemetry, updates and every other call home (the machine may reach only
loopback). Headless Firefox on a machine without a sound server has no audio output, and then
its AudioContext never starts (its output has 0 channels: resume() stays pending), so a
private PulseAudio (Debian's pulseaudio) with a null sink stands in for speakers. Closing kills
Firefox's and PulseAudio's process groups and removes their temp folder, also when the start
failed half-way.

    with Firefox() as ff:
        ff.goto(url)
        ff.click("[data-testid=enter]")
        ff.evaluate("window.mediationRoom.screen")           # an expression...
        ff.evaluate("async () => (await fetch('/x')).status")  # ...or a function, called
        ff.screenshot(path)

evaluate() returns what JSON.stringify makes of the value (a promise is awaited); a script
exception raises JavaScriptError. Uncaught page errors are collected in `page_errors`, 5xx
responses in `server_errors`.
"""
from __future__ import annotations

import asyncio
import base64
import collections
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import aiohttp

FIREFOX = "/usr/bin/firefox-esr"
PULSEAUDIO = "/usr/bin/pulseaudio"

PREFS: dict[str, Any] = {
    # Fake camera and microphone, no prompt, media may autoplay.
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    # Real host addresses in ICE candidates, not mDNS names: with the prompt switched off Firefox
    # would hide them behind .local names, and resolving those multicasts on the network.
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    # First run, default-browser and what's-new pages.
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.aboutwelcome.enabled": False,
    "startup.homepage_welcome_url": "about:blank",
    "startup.homepage_welcome_url.additional": "",
    "browser.newtabpage.enabled": False,
    "browser.tabs.warnOnClose": False,
    "trailhead.firstrun.didSeeAboutWelcome": True,
    # Telemetry and studies.
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.server": "",
    "toolkit.telemetry.archive.enabled": False,
    "app.normandy.enabled": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "app.shield.optoutstudies.enabled": False,
    "browser.ping-centre.telemetry": False,
    "browser.crashReports.unsubmittedCheck.enabled": False,
    # Updates of the browser, add-ons, media plugins (OpenH264), blocklists, remote settings.
    "app.update.auto": False,
    "app.update.disabledForTesting": True,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.blocklist.enabled": False,
    "media.gmp-manager.updateEnabled": False,
    "media.gmp-manager.url": "",
    "services.settings.server": "",
    "browser.search.update": False,
    "browser.region.network.url": "",
    "browser.region.update.enabled": False,
    # Other background connections.
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "captivedetect.canonicalURL": "",
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.trr.mode": 5,
    "dom.push.connection.enabled": False,
    "geo.provider.network.url": "",
    "browser.contentblocking.report.lockwise.enabled": False,
}


class FirefoxFailed(RuntimeError):
    """Firefox did not start, or the BiDi connection failed; the message ends with its log."""


class BidiError(RuntimeError):
    def __init__(self, method: str, error: str, message: str):
        super().__init__(f"{method}: {error}: {message}")
        self.error = error


class JavaScriptError(RuntimeError):
    """The evaluated script threw (or its promise rejected)."""


def _user_js(prefs: dict[str, Any]) -> str:
    return "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items())


def _kill_group(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """End a process started with start_new_session (it leads its own group) and every process
    of that group: SIGTERM, then SIGKILL."""
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            break
        except subprocess.TimeoutExpired:
            continue
    try:   # the leader is gone; children of its group may linger
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class _NullSink:
    """A private PulseAudio whose only sink discards the sound, on a socket in `folder`."""

    def __init__(self, folder: Path, log_path: Path | None):
        self.folder = folder
        self.socket = folder / "native"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def server(self) -> str:
        return f"unix:{self.socket}"

    def start(self, timeout: float = 10.0) -> None:
        if not os.path.exists(PULSEAUDIO):
            raise FirefoxFailed(f"{PULSEAUDIO} is not installed (Debian package pulseaudio), or pass audio_sink=False")
        self.folder.mkdir(parents=True)
        env = {**os.environ, "HOME": str(self.folder), "XDG_RUNTIME_DIR": str(self.folder)}
        env.pop("PULSE_SERVER", None)
        log = open(self.log_path, "a") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                [PULSEAUDIO, "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
                 "--log-target=stderr", "-L", "module-null-sink sink_name=speakers",
                 "-L", f"module-native-protocol-unix socket={self.socket} auth-anonymous=1"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise FirefoxFailed(f"PulseAudio did not start (exit {self.proc.poll()}); see {self.log_path}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc, grace=0)
            self.proc = None


class _Bidi:
    """One BiDi websocket on a private event loop in a thread: the tests are synchronous (and
    sync Playwright already runs a loop in the test's thread)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="firefox-bidi", daemon=True)
        self.thread.start()
        self.events: collections.deque[tuple[str, dict]] = collections.deque()
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[str, asyncio.Future]] = {}
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None

    def run(self, coro, timeout: float):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def connect(self, url: str, host: str | None = None) -> None:
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(url, max_msg_size=0, autoping=True,
                                               headers={"Host": host} if host else None)
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if data.get("type") == "event":
                    self.events.append((data["method"], data.get("params", {})))
                    continue
                method, fut = self._pending.pop(data.get("id"), (None, None))
                if fut is None or fut.done():
                    continue
                if data.get("type") == "error":
                    fut.set_exception(BidiError(method, data.get("error", "?"), data.get("message", "")))
                else:
                    fut.set_result(data.get("result", {}))
        finally:
            for method, fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError(f"{method}: the BiDi connection closed"))
            self._pending.clear()

    async def send(self, method: str, params: dict) -> dict:
        if self._ws is None or self._ws.closed:
            raise ConnectionError(f"{method}: no BiDi connection")
        cid = next(self._ids)
        fut = self.loop.create_future()
        self._pending[cid] = (method, fut)
        await self._ws.send_str(json.dumps({"id": cid, "method": method, "params": params}))
        return await fut

    async def _close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.wait([self._reader], timeout=2)
        if self._http is not None:
            await self._http.close()

    def close(self) -> None:
        try:
            self.run(self._close(), timeout=5)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


class Firefox:
    def __init__(self, binary: str = FIREFOX, *, prefs: dict[str, Any] | None = None,
                 log_path: Path | None = None, viewport: dict | None = None, timeout: float = 10.0,
                 audio_sink: bool = True, bidi_url: Callable[[str], str] | None = None):
        """`timeout`: the default for a command (a navigation, an evaluation). `audio_sink`:
        give Firefox a private PulseAudio null sink as its audio output (see above). `bidi_url`:
        maps the listener Firefox prints (ws://127.0.0.1:P) to the address to connect to, e.g. a
        loopback forwarder when `binary` runs Firefox inside a network namespace."""
        self.binary = binary
        self.bidi_url = bidi_url
        self.audio_sink = audio_sink
        self.prefs = {**PREFS, **(prefs or {})}
        self.log_path = Path(log_path) if log_path else None
        self.viewport = viewport
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.folder: Path | None = None     # temp: the profile and PulseAudio's files
        self.profile: Path | None = None
        self._sink: _NullSink | None = None
        self.context: str | None = None
        self.page_errors: list[str] = []
        self.server_errors: list[str] = []
        self._bidi: _Bidi | None = None
        self._log_lines: list[str] = []
        self._log_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "Firefox":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def log(self) -> str:
        return "".join(self._log_lines)

    def start(self, timeout: float = 30.0) -> "Firefox":
        try:
            self._start(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _start(self, timeout: float) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="firefox-"))
        self.profile = self.folder / "profile"
        self.profile.mkdir()
        (self.profile / "user.js").write_text(_user_js(self.prefs))
        env = {**os.environ, "MOZ_CRASHREPORTER_DISABLE": "1", "MOZ_HEADLESS": "1"}
        for var in ("DISPLAY", "WAYLAND_DISPLAY", "PULSE_SERVER"):
            env.pop(var, None)
        if self.audio_sink:
            self._sink = _NullSink(self.folder / "pulse", self.log_path)
            self._sink.start()
            env["PULSE_SERVER"] = self._sink.server
        self.proc = subprocess.Popen(
            [self.binary, "--headless", "--no-remote", "--remote-debugging-port", "0",
             "--profile", str(self.profile), "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, text=True, errors="replace")
        listening = threading.Event()
        url_box: list[str] = []

        def pump() -> None:
            log = open(self.log_path, "a") if self.log_path else None
            try:
                for line in self.proc.stdout:
                    self._log_lines.append(line)
                    if log:
                        log.write(line)
                        log.flush()
                    m = re.search(r"WebDriver BiDi listening on (ws://\S+)", line)
                    if m and not listening.is_set():
                        url_box.append(m.group(1).rstrip("/"))
                        listening.set()
            finally:
                if log:
                    log.close()

        self._log_thread = threading.Thread(target=pump, name="firefox-log", daemon=True)
        self._log_thread.start()
        deadline = time.monotonic() + timeout
        while not listening.wait(0.1):
            if self.proc.poll() is not None:
                raise FirefoxFailed(f"{self.binary} exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise FirefoxFailed(f"{self.binary}: no BiDi listener within {timeout:.0f} s:\n{self.log()[-4000:]}")
        url = self.bidi_url(url_box[0]).rstrip("/") if self.bidi_url else url_box[0]
        # Through a forwarder, the Host header still names Firefox's own listener (it checks it).
        host = url_box[0].split("://", 1)[1] if url != url_box[0] else None
        self._bidi = _Bidi()
        try:
            self._bidi.run(self._bidi.connect(url + "/session", host), timeout=10)
        except Exception as exc:
            raise FirefoxFailed(f"cannot open the BiDi websocket {url}/session: {exc!r}\n"
                                f"{self.log()[-4000:]}") from exc
        self.command("session.new", {"capabilities": {}})
        self.command("session.subscribe", {"events": ["log.entryAdded", "network.responseCompleted"]})
        tree = self.command("browsingContext.getTree", {"maxDepth": 0})
        self.context = tree["contexts"][0]["context"]
        if self.viewport:
            self.command("browsingContext.setViewport", {"context": self.context, "viewport": self.viewport})

    def close(self) -> None:
        """Idempotent: ends the session, kills the process groups, removes the temp folder."""
        if self._bidi is not None:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    self.command("browser.close", {}, timeout=3)
                except Exception:
                    pass   # the connection drops as Firefox goes, or it hangs: killed below
            self._bidi.close()
            self._bidi = None
        if self.proc is not None:
            _kill_group(self.proc)   # content processes are in Firefox's group
            if self._log_thread is not None:
                self._log_thread.join(5)
            self.proc = None
        if self._sink is not None:
            self._sink.stop()
            self._sink = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = self.profile = None

    # ------------------------------------------------------------------ commands
    def command(self, method: str, params: dict, timeout: float | None = None) -> dict:
        if self._bidi is None:
            raise FirefoxFailed(f"{method}: Firefox is not running")
        result = self._bidi.run(self._bidi.send(method, params), timeout or self.timeout)
        self._collect_errors()
        return result

    def _collect_errors(self) -> None:
        events = self._bidi.events
        while events:
            method, params = events.popleft()
            if method == "log.entryAdded" and params.get("type") == "javascript" and params.get("level") == "error":
                self.page_errors.append(params.get("text", ""))
            elif method == "network.responseCompleted" and params.get("response", {}).get("status", 0) >= 500:
                self.server_errors.append(f"{params['response']['status']} {params['response'].get('url', '')}")

    def goto(self, url: str, timeout: float | None = None) -> None:
        self.command("browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"},
                     timeout=timeout or 30)

    def reload(self, timeout: float | None = None) -> None:
        self.command("browsingContext.reload", {"context": self.context, "wait": "complete"}, timeout=timeout or 30)

    def evaluate(self, js: str, timeout: float | None = None) -> Any:
        """The JSON value of an expression, or of calling it if it is a function; promises are
        awaited; undefined is None."""
        expression = ("(async () => { let v = (" + js.strip().rstrip(";") + "\n);"
                      " if (typeof v === 'function') { v = v(); }"
                      " v = await v; return v === undefined ? undefined : JSON.stringify(v); })()")
        result = self.command("script.evaluate", {
            "expression": expression, "target": {"context": self.context}, "awaitPromise": True,
            "resultOwnership": "none"}, timeout=timeout)
        if result.get("type") == "exception":
            details = result.get("exceptionDetails", {})
            raise JavaScriptError(f"{details.get('text', 'exception')} (in: {js[:200]})")
        value = result.get("result", {})
        return json.loads(value["value"]) if value.get("type") == "string" else None

    def wait_js(self, js: str, what: str, timeout: float = 10.0) -> Any:
        """Poll until `js` is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(js)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"Firefox: timed out waiting for {what}: {js} -> {value!r}")

    def click(self, selector: str) -> None:
        """A real mouse click (BiDi input actions) in the middle of the first element matching
        the CSS selector, scrolled into view first."""
        nodes = self.command("browsingContext.locateNodes", {
            "context": self.context, "locator": {"type": "css", "value": selector}, "maxNodeCount": 1})["nodes"]
        if not nodes:
            raise AssertionError(f"Firefox: nothing matches {selector!r}")
        element = {"sharedId": nodes[0]["sharedId"]}
        self.command("script.callFunction", {
            "functionDeclaration": "(el) => el.scrollIntoView({block: 'center', inline: 'center'})",
            "arguments": [element], "target": {"context": self.context}, "awaitPromise": False,
            "resultOwnership": "none"})
        self.command("input.performActions", {"context": self.context, "actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": [
                {"type": "pointerMove", "x": 0, "y": 0, "origin": {"type": "element", "element": element}},
                {"type": "pointerDown", "button": 0},
                {"type": "pointerUp", "button": 0}]}]})

    def screenshot(self, path: Path | str) -> Path:
        data = self.command("browsingContext.captureScreenshot", {"context": self.context})["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path
