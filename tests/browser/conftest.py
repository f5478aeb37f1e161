"""Real-browser fixtures: the real server in a subprocess and headless Debian Chromium.

The server runs `python -m server.cli serve --demo` on a free port with its own data
directory (SQLite there; DATABASE_URL is removed from its environment). In CI a missing
Chromium or Playwright is a failure, not a skip.
"""
from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.support.servers import ServerFailed, ServerProcess, clean_env, free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox", "--disable-gpu",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
DEMO_PASSWORD = "demo-pass-2026"
PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1280, "height": 900}
IN_CI = bool(os.environ.get("CI"))

pytestmark = pytest.mark.browser


def _missing(what: str):
    if IN_CI:
        pytest.fail(f"{what} (CI must have it)", pytrace=False)
    pytest.skip(what)




@dataclass
class Server:
    url: str
    data_dir: Path
    log_path: Path
    _admin_token: str | None = field(default=None, repr=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api(self, method: str, path: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + "/api/v1" + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def admin_token(self) -> str:
        if self._admin_token is None:
            status, body = self.api("POST", "/auth/login", {"username": "admin", "password": DEMO_PASSWORD})
            assert status == 200, body
            self._admin_token = body["token"]
        return self._admin_token

    def case_count(self) -> int:
        status, body = self.api("GET", "/cases", token=self.admin_token())
        assert status == 200, body
        return body["total"]

    def file_case(self, title: str, **over) -> dict:
        status, body = self.api("GET", "/institutions")
        assert status == 200, body
        case = {"type": "mediation", "category": "neighbour", "title": title,
                "description": "楼上漏水导致我家天花板受损，协商赔偿未果。",
                "institution_id": body["institutions"][0]["id"],
                "applicant": {"name": "赵六", "phone": "13600006666"},
                "respondents": [{"name": "钱七"}], **over}
        status, body = self.api("POST", "/cases", case)
        assert status == 201, body
        return body


@contextlib.contextmanager
def running_server(data_dir: Path, *, identity_check: str = "off", drop_env: tuple[str, ...] = ()):
    """`mediation serve --demo` in a subprocess on a free loopback port, until the block ends."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = clean_env(*drop_env, MEDIATION_DATA_DIR=str(data_dir), PUBLIC_URL=url, IDENTITY_CHECK=identity_check)
    proc = ServerProcess(env, data_dir / "server.log", port=port, args=("--demo",),
                         ready_path="/api/v1/institutions")
    srv = Server(url=url, data_dir=data_dir, log_path=proc.log_path)
    try:
        try:
            proc.start()
        except ServerFailed as exc:
            pytest.fail(str(exc), pytrace=False)
        yield srv
    finally:
        proc.stop(timeout=10)


# The demo server the browser tests share (`server`) is defined in tests/conftest.py: a module that
# imported it from here got a session-scoped copy of its own, and each copy kept a server running
# until the end of the run.


# Module scope, not session: sync Playwright keeps an event loop running in this thread, and
# the asyncio tests of later modules cannot start theirs while it is alive.
@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        _missing(f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright for Python is not installed")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def new_page(browser):
    """Factory: a page in a fresh context (own cookies). Fails the test on any 5xx response."""
    contexts = []
    server_errors: list[str] = []

    def make(viewport=PHONE, locale="zh-CN", mobile=None):
        mobile = viewport["width"] < 600 if mobile is None else mobile
        ctx = browser.new_context(viewport=viewport, locale=locale, is_mobile=mobile, has_touch=mobile,
                                  device_scale_factor=2 if mobile else 1)
        ctx.set_default_timeout(10_000)
        contexts.append(ctx)
        page = ctx.new_page()
        page.on("response", lambda r: server_errors.append(f"{r.status} {r.url}") if r.status >= 500 else None)
        page.on("dialog", lambda d: d.accept())  # confirm() on dangerous actions
        return page

    yield make
    for ctx in contexts:
        ctx.close()
    assert not server_errors, f"server errors: {server_errors}"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
