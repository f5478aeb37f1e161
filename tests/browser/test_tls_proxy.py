"""The room behind a real TLS reverse proxy: Debian's nginx terminates HTTPS on a loopback port
and proxies pages, the API and socket.io (WebSocket upgrade and long-polling) to
`mediation serve` started with `PUBLIC_URL=https://127.0.0.1:<proxy port>`. Chromium trusts the
test's self-signed certificate by its public key (--ignore-certificate-errors-spki-list). A
mediator and a party join through https:// and each decodes the other's video; the staff login
cookie (and every other cookie set over HTTPS) is `Secure`. The server block of NGINX_CONF is the
one README.md ("Deployment (TLS, firewall, systemd)") gives, with real paths there.

In CI (CI set) a missing nginx or Chromium fails the test instead of skipping it.
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.servers import ServerFailed, ServerProcess, clean_env, free_port

from .conftest import CHROMIUM, CHROMIUM_ARGS, DEMO_PASSWORD, DESKTOP, PHONE, Server, _missing
from .lab_helpers import admit, enter
from .room_helpers import open_room, wait_decoding

pytestmark = pytest.mark.browser

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

# Test-only lines first (own pid, logs and temp folders, in the foreground); the server block is
# the README's, with the certificate and ports of this test.
NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 256; }}

http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}

    server {{
        listen 127.0.0.1:{port} ssl http2;
        server_name localhost;
        ssl_certificate     {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;

        # Evidence uploads: up to 5 files of MAX_EVIDENCE_MB (10) in one form.
        client_max_body_size 51m;

        proxy_http_version 1.1;
        proxy_set_header Host              $http_host;
        proxy_set_header X-Forwarded-For   $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header Upgrade           $http_upgrade;
        proxy_set_header Connection        $connection_upgrade;

        # Probes and metrics stay inside (README "Operations").
        location = /metrics {{ return 404; }}
        location = /readyz  {{ return 404; }}

        location /socket.io/ {{
            proxy_pass http://127.0.0.1:{backend};
            # The server pings every 10 s; a socket silent for a minute is dead.
            proxy_read_timeout 60s;
            proxy_send_timeout 60s;
            proxy_buffering off;          # long-polling answers go out at once
        }}

        location / {{
            proxy_pass http://127.0.0.1:{backend};
        }}
    }}
}}
"""


def make_certificate(folder: Path, addresses: tuple[str, ...] = ("127.0.0.1",)) -> str:
    """A self-signed certificate for `addresses` and localhost (cert.pem, key.pem in `folder`);
    returns the base64 SHA-256 of its SubjectPublicKeyInfo, the form Chromium's
    --ignore-certificate-errors-spki-list takes."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mediation test proxy")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([*(x509.IPAddress(ipaddress.ip_address(a)) for a in addresses),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = folder / "key.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


class Nginx:
    """nginx in the foreground with the test's own configuration (never the system service)."""

    def __init__(self, folder: Path, port: int, backend: int):
        self.folder, self.port = folder, port
        (folder / "tmp").mkdir()
        self.conf = folder / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(dir=folder, port=port, backend=backend))
        self.proc: subprocess.Popen | None = None

    def log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def start(self, timeout: float = 15) -> None:
        base = [NGINX, "-p", str(self.folder), "-e", str(self.folder / "error.log"), "-c", str(self.conf)]
        check = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
        if check.returncode:
            pytest.fail(f"nginx rejects the configuration:\n{check.stderr}", pytrace=False)
        self.proc = subprocess.Popen(base, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        ctx = ssl.create_default_context(cafile=str(self.folder / "cert.pem"))
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"nginx exited with {self.proc.returncode}:\n{self.log()}", pytrace=False)
            try:   # the proxy answers over TLS and reaches the server
                with urllib.request.urlopen(f"https://127.0.0.1:{self.port}/healthz", timeout=2, context=ctx):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"nginx did not answer within {timeout:.0f} s:\n{self.log()}", pytrace=False)
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)   # graceful shutdown
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def tls_deployment(browser, artifacts):
    """nginx on https://127.0.0.1:<port> in front of `mediation serve --demo`; yields
    (Server reached directly for seeding, the public https URL, an SSL context trusting the
    certificate, Chromium trusting it, the nginx folder). Everything is stopped and the temp
    folder removed afterwards, also when the test fails (the logs are copied to test-artifacts)."""
    if not os.path.exists(NGINX):
        _missing("nginx is not installed (apt-get install nginx)")
    # Not pytest's tmp_path: nginx's workers (nobody, when the test runs as root) must reach their
    # temp folders, and nothing is left behind.
    folder = Path(tempfile.mkdtemp(prefix="mediation-tls-"))
    folder.chmod(0o755)
    server_proc = nginx = chromium = None
    try:
        spki = make_certificate(folder)
        backend, port = free_port(), free_port()
        public = f"https://127.0.0.1:{port}"
        data = folder / "server"
        env = clean_env(MEDIATION_DATA_DIR=str(data), PUBLIC_URL=public, IDENTITY_CHECK="off")
        server_proc = ServerProcess(env, folder / "server.log", port=backend, args=("--demo", "--host", "127.0.0.1"),
                                    ready_path="/api/v1/institutions")
        try:
            server_proc.start()
        except ServerFailed as exc:
            pytest.fail(str(exc), pytrace=False)
        nginx = Nginx(folder, port, backend)
        nginx.start()
        chromium = browser.browser_type.launch(
            executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS + ["--autoplay-policy=no-user-gesture-required",
                                  f"--ignore-certificate-errors-spki-list={spki}"])
        ctx = ssl.create_default_context(cafile=str(folder / "cert.pem"))
        yield Server(url=server_proc.url, data_dir=data, log_path=server_proc.log_path), public, ctx, chromium, folder
    finally:
        if chromium is not None:
            chromium.close()
        if nginx is not None:
            nginx.stop()
        if server_proc is not None:
            server_proc.stop(timeout=10)
        for name in ("server.log", "error.log", "access.log"):
            if (folder / name).exists():
                shutil.copyfile(folder / name, artifacts / f"tls-proxy-{name}")
        shutil.rmtree(folder, ignore_errors=True)


def _page(chromium, viewport, label, problems):
    mobile = viewport["width"] < 600
    ctx = chromium.new_context(viewport=viewport, locale="zh-CN", is_mobile=mobile, has_touch=mobile)
    ctx.grant_permissions(["camera", "microphone"])
    ctx.set_default_timeout(20_000)
    page = ctx.new_page()
    page.on("pageerror", lambda e: problems.append(f"{label}: script error: {e}"))
    page.on("response", lambda r: problems.append(f"{label}: {r.status} {r.url}") if r.status >= 500 else None)
    page.on("console", lambda m: problems.append(f"{label}: {m.text}")
            if m.type == "error" and "Content Security Policy" in m.text else None)
    page.on("dialog", lambda d: d.accept())
    return ctx, page


def _polling_handshake(public: str, ctx: ssl.SSLContext, origin: str) -> tuple[int, str]:
    """engine.io's long-polling open through the proxy, with a browser's Origin header."""
    req = urllib.request.Request(f"{public}/socket.io/?EIO=4&transport=polling&t=probe", headers={"Origin": origin})
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _poll(public: str, ctx: ssl.SSLContext, sid: str, body: str | None = None) -> str:
    data = body.encode() if body is not None else None
    req = urllib.request.Request(f"{public}/socket.io/?EIO=4&transport=polling&sid={sid}", data=data,
                                 method="POST" if data else "GET",
                                 headers={"Origin": public, "Content-Type": "text/plain;charset=UTF-8"})
    with urllib.request.urlopen(req, timeout=15, context=ctx) as resp:
        return resp.read().decode()


def test_room_and_staff_login_through_nginx_tls(tls_deployment):
    server, public, ctx, chromium, folder = tls_deployment
    started = time.monotonic()

    # Join links carry the public https:// URL.
    links = open_room(server, "相邻权纠纷（TLS 反向代理测试）")
    status, body = server.api("POST", f"/sessions/{links.session_id}/invites", {"role": "mediator"},
                              token=_login_token(server))
    assert status == 201, body
    assert body["url"].startswith(public + "/join/"), body["url"]

    # socket.io long-polling through the proxy: the page's own https origin is accepted (the
    # server sees X-Forwarded-Proto: https), a foreign one is not.
    status, text = _polling_handshake(public, ctx, public)
    assert status == 200, text
    sid = json.loads(text[text.index("{"):])["sid"]
    assert _poll(public, ctx, sid, "40") == "OK"           # socket.io CONNECT to "/" …
    assert _poll(public, ctx, sid).startswith("40")         # … answered over a long-poll GET
    assert _poll(public, ctx, sid, "1") == "OK"            # engine.io close
    status, text = _polling_handshake(public, ctx, "https://evil.example")
    assert status == 400, (status, text)
    # Probes and metrics are not published by the proxy.
    for path in ("/metrics", "/readyz"):
        try:
            urllib.request.urlopen(public + path, timeout=10, context=ctx)
            raise AssertionError(f"{path} is reachable through the proxy")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404, (path, exc.code)

    problems: list[str] = []
    contexts = []
    try:
        mctx, mediator = _page(chromium, DESKTOP, "mediator", problems)
        pctx, party = _page(chromium, PHONE, "party", problems)
        contexts += [mctx, pctx]
        mediator.goto(public + links.path(links.mediator_token))
        party.goto(public + links.path(links.party_tokens[0]))
        assert party.evaluate("location.protocol") == "https:" and party.evaluate("window.isSecureContext")
        assert enter(mediator) == "room"
        joined = time.monotonic()
        assert enter(party) == "lobby"
        admit(mediator, party)
        party_stats = wait_decoding(party, "party sees the mediator (through nginx)", timeout=20)
        mediator_stats = wait_decoding(mediator, "mediator sees the party (through nginx)", timeout=20)
        print(f"\n[tls-proxy] mediator joined -> both decoding: {time.monotonic() - joined:.1f} s; "
              f"party {party_stats}, mediator {mediator_stats}")

        # Staff login over HTTPS: the session cookie is Secure (and so is every cookie set here).
        sctx, staff = _page(chromium, DESKTOP, "staff", problems)
        contexts.append(sctx)
        staff.goto(public + "/login")
        staff.fill("input[name=username]", "mediator")
        staff.fill("input[name=password]", DEMO_PASSWORD)
        staff.click("[data-testid=login-form] button[type=submit]")
        staff.wait_for_load_state()
        assert staff.url.startswith(public) and "/login" not in staff.url, staff.inner_text("main")
        staff.goto(public + "/?lang=en")     # the language cookie too
        cookies = {c["name"]: c for c in sctx.cookies()}
        assert "lang" in cookies, cookies
        session = cookies.get("mediation_session")
        assert session and session["secure"] and session["httpOnly"], cookies
        not_secure = [c["name"] for each in contexts for c in each.cookies() if not c["secure"]]
        assert not not_secure, f"cookies set over HTTPS without Secure: {not_secure}"
    finally:
        for c in contexts:
            c.close()
    assert not problems, problems

    # The signaling went over WebSockets through nginx: 101 Switching Protocols, logged when
    # each socket closed (with the pages above).
    deadline = time.monotonic() + 10
    while True:
        access = (folder / "access.log").read_text()
        upgraded = [line for line in access.splitlines()
                    if "/socket.io/" in line and "transport=websocket" in line and '" 101 ' in line]
        if len(upgraded) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(upgraded) >= 2, access[-3000:]
    print(f"[tls-proxy] whole test after the fixture: {time.monotonic() - started:.1f} s")


def _login_token(server) -> str:
    status, body = server.api("POST", "/auth/login", {"username": "mediator", "password": DEMO_PASSWORD})
    assert status == 200, body
    return body["token"]
