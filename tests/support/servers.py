"""`mediation serve` as a real process on a free loopback port, for tests and benchmarks alike.

One launcher instead of a copy per suite: it starts the command, waits until the node answers
(`/readyz` by default), keeps its output in a log file, and stops it with SIGTERM (orderly, as
an orchestrator does) or SIGKILL (a crash). Failures raise `ServerFailed` with the log's tail;
pytest fixtures turn that into `pytest.fail`.
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Variables of the developer's own shell that must not leak into a test server.
FOREIGN_ENV = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PUBLIC_URL", "RECORDINGS_DIR", "EVIDENCE_DIR",
               "NODE_ID", "NODE_URL", "MEDIATION_DATA_DIR", "ICE_SERVERS", "MEDIA_ADDRESSES")


class ServerFailed(RuntimeError):
    """The server exited or did not become ready; the message ends with its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(*drop: str, **extra: str) -> dict[str, str]:
    """This process's environment without the deployment variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV and k not in drop}
    env.update(extra)
    return env


class ServerProcess:
    def __init__(self, env: dict[str, str], log_path: Path, *, port: int | None = None, args: tuple[str, ...] = (),
                 name: str = "server", ready_path: str = "/readyz", python_args: tuple[str, ...] | None = None,
                 prefix: tuple[str, ...] = ()):
        """`prefix` runs the command through another (e.g. `ip netns exec NS` in the network lab,
        where the test then reaches the server through a forwarder: set `probe_url`)."""
        self.port = port or free_port()
        self.env = {"PYTHONUNBUFFERED": "1", **env}
        self.log_path = Path(log_path)
        self.args = args
        self.name = name
        self.ready_path = ready_path
        # How Python runs the CLI: `-m server.cli` unless a benchmark wraps it (e.g. with a GC probe).
        self.python_args = python_args or ("-m", "server.cli")
        self.prefix = tuple(prefix)
        self.probe_url: str | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return self.probe_url or f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 60) -> "ServerProcess":
        self.spawn()
        self.wait_ready(timeout)
        return self

    def spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen([*self.prefix, sys.executable, *self.python_args, "serve", *self.args,
                                          "--port", str(self.port)],
                                         cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerFailed(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise ServerFailed(f"{self.name} was not ready within {timeout:.0f} s:\n{self.log()[-4000:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no goodbye to Redis, files left as they were."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    async def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, as an orchestrator stops a node; returns the exit code (the caller's event
        loop keeps running meanwhile)."""
        self.proc.terminate()
        return await asyncio.to_thread(self.proc.wait, timeout)

    def stop(self, timeout: float = 15) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
