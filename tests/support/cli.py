"""The `mediation` command line as a real process against a test's settings."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from tests.support.servers import ROOT


def run_cli(args: list[str], settings, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "MEDIATION_DATA_DIR": str(settings.data_dir),
           "EVIDENCE_DIR": str(settings.evidence_dir), "SECRET_KEY": settings.secret_key}
    return subprocess.run([sys.executable, "-m", "server.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


async def run_cli_async(args: list[str], settings, timeout: float = 120) -> subprocess.CompletedProcess:
    """Off the event loop: the app's workers in this process must be able to finish their
    transactions meanwhile (SQLite has one writer)."""
    return await asyncio.to_thread(run_cli, args, settings, timeout)
