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
    def __init__(self, workdir: Path, secret: str, realm: str = "mediation.test"):
        self.workdir = Path(workdir)
        self.secret = secret
        self.realm = realm
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "turnserver.log"

    @property
    def urls(self) -> list[str]:
        return [f"turn:127.0.0.1:{self.port}?transport=udp", f"turn:127.0.0.1:{self.port}?transport=tcp"]

    def config(self) -> str:
        relay_low = 49152 + (self.port % 1000) * 10
        return "\n".join([
            f"listening-port={self.port}",
            "listening-ip=127.0.0.1",
            "relay-ip=127.0.0.1",
            f"min-port={relay_low}",
            f"max-port={relay_low + 9}",
            "use-auth-secret",
            f"static-auth-secret={self.secret}",
            f"realm={self.realm}",
            "fingerprint",
            "no-tls",
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
        self.proc = subprocess.Popen([TURNSERVER, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"turnserver exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"turnserver did not listen within {timeout} s:\n{self.log()[-3000:]}")

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
