"""A real coturn (Debian's `coturn`) on loopback for tests and benchmarks.

Configured the way the README tells an operator to run it next to the server (use-auth-secret
with a shared secret), except that it listens and relays on 127.0.0.1 only, lets loopback
peers through (the test server is on loopback), and keeps every file in a temp folder.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.support.servers import free_port

TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"


class Coturn:
    def __init__(self, workdir: Path, secret: str, realm: str = "mediation.test", *, listen_ip: str = "127.0.0.1",
                 netns: str | None = None, port: int | None = None, tls: tuple[Path, Path] | None = None):
        """In the network lab (tests/support/netlab.py) pass `netns` (the server namespace) and
        the lab address to listen and relay on. With `tls` (certificate, key) coturn takes TURN
        over TLS (turns:) on `port`, as an operator runs it on 443 (README, "TURN relay")."""
        self.tls = tls
        self.workdir = Path(workdir)
        self.secret = secret
        self.realm = realm
        self.listen_ip = listen_ip
        self.netns = netns
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "turnserver.log"

    @property
    def urls(self) -> list[str]:
        return [f"turn:{self.listen_ip}:{self.port}?transport=udp", f"turn:{self.listen_ip}:{self.port}?transport=tcp"]

    def config(self) -> str:
        relay_low = 49152 + (self.port % 1000) * 10
        listening = [f"listening-port={self.port}", "no-tls"]
        if self.tls is not None:
            listening = [f"tls-listening-port={self.port}", f"listening-port={self.port + 1 if self.port < 65535 else 3478}",
                         f"cert={self.tls[0]}", f"pkey={self.tls[1]}", "no-tlsv1", "no-tlsv1_1"]
        return "\n".join([
            *listening,
            f"listening-ip={self.listen_ip}",
            f"relay-ip={self.listen_ip}",
            f"min-port={relay_low}",
            f"max-port={relay_low + 9}",
            "use-auth-secret",
            f"static-auth-secret={self.secret}",
            f"realm={self.realm}",
            "fingerprint",
            "no-dtls",
            "no-cli",
            "no-multicast-peers",
            "allow-loopback-peers",
            "no-software-attribute",
            f"userdb={self.workdir / 'turndb'}",
            f"pidfile={self.workdir / 'turnserver.pid'}",
            f"log-file={self.log_path}",
            "simple-log",
            "verbose",
        ]) + "\n"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 15) -> "Coturn":
        if not Path(TURNSERVER).exists():
            raise RuntimeError("coturn is not installed (Debian package coturn; ./run.sh test installs it)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "turnserver.conf"
        conf.write_text(self.config())
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen([*prefix, TURNSERVER, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"turnserver exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                self._probe()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"turnserver did not listen within {timeout} s:\n{self.log()[-3000:]}")

    def _probe(self) -> None:
        if self.netns:
            from tests.support.netlab import inside
            with inside(self.netns):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with sock:
            sock.settimeout(0.5)
            sock.connect((self.listen_ip, self.port))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def allocations(self) -> int:
        """Relay allocations coturn logged as created (a session with a relayed address)."""
        return self.log().count("new, realm=") or self.log().count("ALLOCATE processed, success")
